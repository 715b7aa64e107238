"""Tests of avs_jax/train/optimizer.py: OneCycle lr/beta1 against torch's formulas, per-label
learning rates, global grad-norm clipping, step decay."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from avs_jax.train.defaults import default_train_config
from avs_jax.train.optimizer import (
    create_learning_rate_fn,
    create_optimizer,
    onecycle_b1_schedule,
    onecycle_lr_schedule,
)


def torch_onecycle(step, total, max_lr, pct_start, div, final_div, base_m, max_m):
    """torch.optim.lr_scheduler.OneCycleLR.get_lr (anneal 'cos', three_phase False), by hand."""
    initial = max_lr / div
    minimum = initial / final_div
    phases = [
        (float(pct_start * total) - 1, initial, max_lr, max_m, base_m),
        (total - 1, max_lr, minimum, base_m, max_m),
    ]
    cos = lambda a, b, pct: b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)  # noqa: E731
    start = 0
    for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start)
            return cos(lr0, lr1, pct), cos(m0, m1, pct)
        start = end


def test_onecycle_matches_torch_formula_and_worked_values():
    cfg = default_train_config("avsnet").train
    total = 100  # phase 1 ends at step 69
    lr, b1 = onecycle_lr_schedule(cfg, total), onecycle_b1_schedule(cfg, total)
    for step in [0, 1, 23, 50, 69, 70, 84, 98, 99]:
        want_lr, want_b1 = torch_onecycle(step, total, 1.61e-4, 0.7, 1.0, 1e4, 0.85, 0.95)
        np.testing.assert_allclose(float(lr(step)), want_lr, rtol=1e-5)
        np.testing.assert_allclose(float(b1(step)), want_b1, rtol=1e-6)
    # Worked by hand: div_factor 1 keeps the lr at max in phase 1 while beta1 falls 0.95 -> 0.85;
    # a third of phase 1: 0.85 + 0.05 (cos(pi/3) + 1) = 0.925; halfway through phase 2 the lr is
    # the mean of max and min and beta1 is back at 0.9; the last step reaches max/1e4 and 0.95.
    np.testing.assert_allclose(float(lr(0)), 1.61e-4, rtol=1e-6)
    np.testing.assert_allclose(float(lr(69)), 1.61e-4, rtol=1e-6)
    np.testing.assert_allclose(float(b1(23)), 0.925, rtol=1e-6)
    np.testing.assert_allclose(float(b1(69)), 0.85, rtol=1e-6)
    np.testing.assert_allclose(float(lr(84)), (1.61e-4 + 1.61e-8) / 2, rtol=1e-5)
    np.testing.assert_allclose(float(b1(84)), 0.90, rtol=1e-6)
    np.testing.assert_allclose(float(lr(99)), 1.61e-8, rtol=1e-4)
    np.testing.assert_allclose(float(b1(99)), 0.95, rtol=1e-6)


def test_optimizer_state_carries_the_scheduled_beta1_and_lr():
    cfg = default_train_config("avsnet").train
    params = {"w": jnp.ones(3)}
    tx = create_optimizer(cfg, 10, None)
    state = tx.init(params)
    for _ in range(4):
        _, state = tx.update({"w": jnp.ones(3)}, state, params)
    hp = state[1].inner_states["default"].inner_state.hyperparams
    want_lr, want_b1 = torch_onecycle(3, 10, 1.61e-4, 0.7, 1.0, 1e4, 0.85, 0.95)
    np.testing.assert_allclose(float(hp["learning_rate"]), want_lr, rtol=1e-5)
    np.testing.assert_allclose(float(hp["b1"]), want_b1, rtol=1e-6)


def test_encoder_label_gets_a_tenth_of_the_learning_rate():
    cfg = default_train_config("avsnet").train
    cfg.weight_decay = 0.0
    cfg.grad_clip_norm = -1.0
    params = {"encoder": {"k": jnp.ones((2, 3))}, "head": {"k": jnp.ones(4)}}
    labels = {"encoder": {"k": "encoder"}, "head": {"k": "default"}}
    grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
    tx = create_optimizer(cfg, 100, labels)
    updates, _ = tx.update(grads, tx.init(params), params)
    # First Adam step: m_hat / sqrt(v_hat) = g / |g|, so the update is -lr (eps is negligible).
    np.testing.assert_allclose(np.asarray(updates["head"]["k"]), -1.61e-4, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["encoder"]["k"]), -1.61e-5, rtol=1e-6)


def test_global_grad_norm_clipping_to_0_1():
    cfg = default_train_config("avsnet").train
    cfg.weight_decay = 0.0
    cfg.onecycle.cycle_momentum = False  # constant beta1 keeps Adam's bias correction exact
    params = {"a": jnp.zeros(4), "b": jnp.zeros(12)}
    g1 = {"a": jnp.array([5.0, -5.0, 5.0, -5.0]), "b": jnp.full(12, 5.0 / np.sqrt(3.0))}
    norm = float(optax.tree.norm(g1))  # 10 + 10 in quadrature: sqrt(200)
    np.testing.assert_allclose(norm, np.sqrt(200.0), rtol=1e-6)
    g2 = jax.tree.map(lambda g: g * 0.1 / norm, g1)  # already at the clip norm: unchanged
    tx = create_optimizer(cfg, 100, None)
    state = tx.init(params)
    _, state = tx.update(g1, state, params)
    u2, _ = tx.update(g2, state, params)
    # Clipped, both steps see the same gradient c, so Adam's bias-corrected ratio is c / |c|:
    # the update is -lr(1) * c / (|c| + eps), elementwise.
    lr1 = float(create_learning_rate_fn(cfg, 100, 1)(1))
    for k in g2:
        c = np.asarray(g2[k])
        np.testing.assert_allclose(np.asarray(u2[k]), -lr1 * c / (np.abs(c) + 1e-8), rtol=1e-5)
    # Without clipping the huge first gradient dominates the moments: a much smaller step.
    cfg.grad_clip_norm = -1.0
    tx = create_optimizer(cfg, 100, None)
    state = tx.init(params)
    _, state = tx.update(g1, state, params)
    u2_unclipped, _ = tx.update(g2, state, params)
    assert float(jnp.max(jnp.abs(u2_unclipped["a"]))) < 0.8 * lr1  # Adam moments by hand: 0.675 lr


@pytest.mark.parametrize("stage", ["monodepth2", "litemono"])
def test_step_decay_after_15_of_20_epochs(stage):
    cfg = default_train_config(stage).train
    spe = 7
    lr = create_learning_rate_fn(cfg, 20 * spe, spe)
    np.testing.assert_allclose(float(lr(0)), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(float(lr(15 * spe - 1)), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(float(lr(15 * spe)), 1e-5, rtol=1e-5)
    np.testing.assert_allclose(float(lr(20 * spe - 1)), 1e-5, rtol=1e-5)
    params = {"w": jnp.ones(3)}
    tx = create_optimizer(cfg, 20 * spe, None, spe)
    updates, _ = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    # Adam's first step is -lr; AdamW (Lite-Mono) adds the decoupled decay -lr * wd * w.
    want = -1e-4 * (1 + (1e-2 if stage == "litemono" else 0.0))
    np.testing.assert_allclose(np.asarray(updates["w"]), want, rtol=1e-5)


def test_unknown_optimizer_is_a_clear_error():
    cfg = default_train_config("avsnet").train
    cfg.optimizer = "sgd"
    with pytest.raises(ValueError, match="config.train.optimizer='sgd'"):
        create_optimizer(cfg, 10, None)
