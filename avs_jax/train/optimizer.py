"""Optimizers and learning-rate schedules of both training stages, built from config.train.

Three recipes, picked by `config.train.optimizer`:

* ``adamw_onecycle`` (stage 1, ZoeDepth): AdamW whose learning rate and beta1 follow torch's
  `OneCycleLR` (cosine annealing, two phases, `cycle_momentum=True`), global grad-norm clipping,
  and a lower learning rate for the pretrained encoder (docs/reference.md, "Training defaults").
* ``adam_step`` (Monodepth2): Adam with a step decay of the learning rate every
  `lr_decay_epochs` epochs by `lr_decay_factor`.
* ``adamw_step`` (the light, Lite-Mono-like variant): as ``adam_step`` with decoupled weight decay.

Per-label learning rates: `param_labels` is a pytree of str matching the params (from
`task.param_labels(params)`); every label gets the same recipe with its learning rate (and so
its AdamW decay, as torch's per-group lr) multiplied by `config.train.lr_multipliers[label]`
(1.0 when the label is not listed). Clipping is global over all parameters, before the split,
as `torch.nn.utils.clip_grad_norm_(model.parameters())` in ZoeDepth.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from avs_jax.errors import BadInputError

Schedule = Callable[[Any], Any]

OPTIMIZERS = ("adamw_onecycle", "adam_step", "adamw_step")


def _cosine_anneal(start: float, end: float, pct):
    """torch OneCycleLR `_annealing_cos`: cosine from `start` (pct 0) to `end` (pct 1)."""
    return end + (start - end) / 2.0 * (jnp.cos(math.pi * pct) + 1.0)


def _one_cycle(num_steps: int, pct_start: float, start: float, peak: float, end: float) -> Schedule:
    """Two-phase cosine schedule with torch OneCycleLR's step bookkeeping.

    torch (three_phase=False): phase 1 ends at step `pct_start * total - 1` and goes
    start -> peak; phase 2 ends at `total - 1` and goes peak -> end; step i of the optimizer
    (0-based) uses the value at i, which is optax's `count` before the update.
    """
    end_1 = float(pct_start * num_steps) - 1.0
    end_2 = float(num_steps) - 1.0

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        pct_1 = t / jnp.maximum(end_1, 1e-12)
        pct_2 = (t - end_1) / jnp.maximum(end_2 - end_1, 1e-12)
        phase_1 = _cosine_anneal(start, peak, pct_1)
        phase_2 = _cosine_anneal(peak, end, pct_2)
        return jnp.where(t <= end_1, phase_1, phase_2)

    return schedule


def onecycle_lr_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> Schedule:
    """Learning rate of torch `OneCycleLR(max_lr, total_steps=num_steps, anneal 'cos')`.

    initial = max_lr / div_factor, minimum = initial / final_div_factor (ZoeDepth: div 1,
    final_div 1e4, so the lr stays at max_lr during phase 1 and then falls by 1e4).
    """
    peak = cfg.learning_rate
    initial = peak / cfg.onecycle.div_factor
    final = initial / cfg.onecycle.final_div_factor
    return _one_cycle(num_steps, cfg.onecycle.pct_start, initial, peak, final)


def onecycle_b1_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> Schedule:
    """Adam beta1 of torch `OneCycleLR(cycle_momentum=True)`: max -> base -> max momentum.

    Momentum moves against the lr: it falls from max_momentum (0.95) to base_momentum (0.85)
    while the lr rises (phase 1) and climbs back while the lr anneals (phase 2).
    """
    oc = cfg.onecycle
    return _one_cycle(num_steps, oc.pct_start, oc.max_momentum, oc.base_momentum, oc.max_momentum)


def step_decay_lr_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> Schedule:
    """torch `StepLR(step_size=lr_decay_epochs, gamma=lr_decay_factor)` counted in optimizer steps."""
    return optax.exponential_decay(
        init_value=cfg.learning_rate,
        transition_steps=cfg.lr_decay_epochs * steps_per_epoch,
        decay_rate=cfg.lr_decay_factor,
        staircase=True,
    )


def create_learning_rate_fn(
    cfg: ml_collections.ConfigDict, num_steps: int, steps_per_epoch: int
) -> Schedule:
    """The base learning-rate schedule (label multiplier 1.0), for the optimizer and for logging."""
    if cfg.optimizer == "adamw_onecycle":
        return onecycle_lr_schedule(cfg, num_steps)
    if cfg.optimizer in ("adam_step", "adamw_step"):
        return step_decay_lr_schedule(cfg, steps_per_epoch)
    raise BadInputError(f"config.train.optimizer={cfg.optimizer!r}; expected one of {OPTIMIZERS}")


def _scaled(schedule: Schedule, mult: float) -> Schedule:
    return lambda count: mult * schedule(count)


def _label_transform(
    cfg: ml_collections.ConfigDict, lr: Schedule, b1
) -> optax.GradientTransformation:
    """The per-label optimizer; hyperparameters injected so they show in opt_state."""
    if cfg.optimizer == "adam_step":
        return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=cfg.b2, eps=cfg.eps)
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=lr, b1=b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def create_optimizer(
    cfg: ml_collections.ConfigDict,
    num_steps: int,
    param_labels: Any = None,
    steps_per_epoch: int | None = None,
) -> optax.GradientTransformation:
    """The optax optimizer of `config.train` (`cfg`) for a run of `num_steps` optimizer steps.

    Args:
      cfg: `config.train` (see `avs_jax.train.defaults.default_train_config`).
      num_steps: total number of optimizer steps (OneCycle's `total_steps`).
      param_labels: pytree of str with the params' structure (or a callable params -> such a
        pytree), from `task.param_labels`; None puts every parameter under "default".
      steps_per_epoch: for the step-decay recipes (`lr_decay_epochs` is in epochs).
    Returns:
      chain(optional clip_by_global_norm, multi_transform over labels).
    """
    if cfg.optimizer not in OPTIMIZERS:
        raise BadInputError(
            f"config.train.optimizer={cfg.optimizer!r}; expected one of {OPTIMIZERS}"
        )
    if cfg.optimizer != "adamw_onecycle" and not steps_per_epoch:
        raise BadInputError(
            f"config.train.optimizer={cfg.optimizer!r} decays per epoch: "
            "steps_per_epoch must be given (> 0)"
        )
    lr = create_learning_rate_fn(cfg, num_steps, steps_per_epoch or 1)
    b1 = (
        onecycle_b1_schedule(cfg, num_steps)
        if (cfg.optimizer == "adamw_onecycle" and cfg.onecycle.cycle_momentum)
        else cfg.b1
    )

    mults = cfg.get("lr_multipliers", None) or {}
    mults = dict(mults.to_dict() if isinstance(mults, ml_collections.ConfigDict) else mults)
    if param_labels is None:
        labels = {"default"}
        param_labels = lambda params: jax.tree.map(lambda _: "default", params)  # noqa: E731
    elif callable(param_labels):
        labels = None  # known only once params are seen; see below
    else:
        labels = set(jax.tree.leaves(param_labels))
    if labels is None:
        # multi_transform needs a transform per label up front: cover every label that has a
        # multiplier plus "default"; a label outside this set fails loudly in optax.
        labels = set(mults) | {"default"}
    transforms = {
        label: _label_transform(cfg, _scaled(lr, float(mults.get(label, 1.0))), b1)
        for label in sorted(labels)
    }
    parts = []
    if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    parts.append(optax.multi_transform(transforms, param_labels))
    return optax.chain(*parts)
