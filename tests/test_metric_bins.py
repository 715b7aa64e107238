"""ZoeDepth metric-bins layers against worked values (docs/reference.md, "ZoeDepth metric-bins head")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.models.metric_bins import (
    AttractorLayer,
    SeedBinRegressor,
    attract,
    inv_attractor,
    log_binomial_probs,
)


@pytest.mark.parametrize("t", [0.0212, 1.0, 50.0])
def test_log_binomial_probabilities_sum_to_one(t):
    p = jnp.linspace(0.0, 1.0, 11)
    probs = np.asarray(log_binomial_probs(p, jnp.full_like(p, t), 64))
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.77])
def test_log_binomial_peaks_at_nearest_bin_for_low_temperature(p):
    k = 64
    probs = np.asarray(log_binomial_probs(jnp.array([p]), jnp.array([0.0212]), k))[0]
    assert np.argmax(probs) == round(p * (k - 1))
    # A low temperature concentrates the mass on the bins around p(K-1); a high one spreads it.
    centre = p * (k - 1)
    near = np.abs(np.arange(k) - centre) < 2.0
    assert probs[near].sum() > 0.99
    flat = np.asarray(log_binomial_probs(jnp.array([p]), jnp.array([50.0]), k))[0]
    assert flat.max() < 0.05


def test_inverse_attractor_hand_values():
    # One attractor at 2.0, alpha 1000, gamma 2: delta = dx / (1 + 1000 dx^2), dx = 2 - c.
    centres = jnp.array([1.99, 2.05, 5.0, 0.5])
    new = np.asarray(attract(centres, jnp.array([2.0]), alpha=1000.0, gamma=2))
    dx = 2.0 - np.array([1.99, 2.05, 5.0, 0.5])
    expected_delta = dx / (1 + 1000 * dx**2)
    np.testing.assert_allclose(new - np.asarray(centres), expected_delta, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(expected_delta[:2], [0.01 / 1.1, -0.05 / 3.5], rtol=1e-6)
    # Every centre moves towards the attractor, never past it.
    assert np.all(np.sign(new - np.asarray(centres)) == np.sign(dx))
    assert np.all(np.abs(new - 2.0) <= np.abs(np.asarray(centres) - 2.0))
    # Far centres are almost unchanged (|delta| <= 1/(alpha |dx|)).
    assert abs(new[2] - 5.0) < 4e-4 and abs(new[3] - 0.5) < 7e-4


def test_attractor_mean_over_attractors():
    c = jnp.array([1.0, 3.0])
    a = jnp.array([1.02, 2.97])
    new = np.asarray(attract(c, a, alpha=1000.0, gamma=2, kind="mean"))
    f = np.asarray(inv_attractor(a[:, None] - c[None, :], 1000.0, 2))
    np.testing.assert_allclose(new, np.asarray(c) + f.mean(0), rtol=1e-6)
    # Each centre is pulled mostly by its nearby attractor.
    assert 1.0 < new[0] < 1.02 and 2.97 < new[1] < 3.0


def _init_apply(module, *args):
    variables = module.init(jax.random.key(0), *args)
    return module.apply(variables, *args)


def test_softplus_seed_regressor_positive():
    x = jax.random.normal(jax.random.key(1), (2, 3, 4, 8)) * 3
    b, centres = _init_apply(SeedBinRegressor(16, 32, "softplus"), x)
    assert np.all(np.asarray(centres) > 0)
    np.testing.assert_array_equal(np.asarray(b), np.asarray(centres))


def test_normed_seed_regressor_ordered_inside_range():
    lo, hi = 1e-3, 30.0
    x = jax.random.normal(jax.random.key(2), (2, 3, 4, 8)) * 3
    b, centres = _init_apply(SeedBinRegressor(16, 32, "normed", lo, hi), x)
    c = np.asarray(centres)
    assert np.all(c > lo) and np.all(c < hi)
    assert np.all(np.diff(c, axis=-1) > 0)
    # Edges rebuilt from the centres: min, then each next edge = 2 c_k - previous edge; the last
    # edge is max (widths normalised to max - min).
    edge = np.full(c.shape[:-1], lo)
    for k in range(c.shape[-1]):
        edge = 2 * c[..., k] - edge
    np.testing.assert_allclose(edge, hi, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(b), (c - lo) / (hi - lo), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["softplus", "normed"])
def test_attractor_layer_keeps_bins_and_bounds(kind):
    lo, hi = 1e-3, 10.0
    emb = jax.random.normal(jax.random.key(3), (1, 4, 6, 8))
    prev = jax.random.normal(jax.random.key(4), (1, 2, 3, 8))
    if kind == "normed":
        b_prev = jax.random.uniform(jax.random.key(5), (1, 2, 3, 16))
    else:
        b_prev = jax.random.uniform(jax.random.key(5), (1, 2, 3, 16)) * hi
    layer = AttractorLayer(4, 16, bin_centers_type=kind, min_depth=lo, max_depth=hi)
    b, centres = _init_apply(layer, emb, b_prev, prev)
    assert b.shape == centres.shape == (1, 4, 6, 16)
    c = np.asarray(centres)
    if kind == "normed":
        assert np.all(c >= lo) and np.all(c <= hi) and np.all(np.diff(c, axis=-1) >= 0)
    else:
        # Attractors are positive and each pull is a convex step: centres stay positive.
        assert np.all(c > 0)


def test_log_binomial_finite_under_jit():
    # XLA once folded the k = K-1 Stirling term to 0 * log(0) = NaN inside jit.
    p = jnp.array([0.0, 1e-5, 0.3, 0.9999, 1.0])
    t = jnp.array([0.0212, 0.0212, 1.0, 50.0, 0.0212])
    probs = np.asarray(jax.jit(log_binomial_probs, static_argnums=2)(p, t, 64))
    np.testing.assert_allclose(probs, np.asarray(log_binomial_probs(p, t, 64)), atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_stirling_log_binomial_is_symmetric_and_close_to_exact():
    from math import lgamma

    from avs_jax.models.metric_bins import log_binomial_coefficient

    k = np.arange(64)
    lc = log_binomial_coefficient(63, k)
    np.testing.assert_allclose(lc, lc[::-1], atol=1e-4)
    exact = np.array([lgamma(64) - lgamma(i + 1) - lgamma(64 - i) for i in k])
    # Stirling without the sqrt(2 pi k) terms: off by at most ~ 0.5 log(2 pi k (n-k)/n) + 1.
    assert np.all(np.abs(lc - exact) < 4.0)


def test_bf16_seed_centres_come_from_an_fp32_last_conv():
    """In bf16 compute the hidden layer is bf16 but the last 1×1 conv runs in fp32: the centres
    equal softplus of an fp32 product of the bf16 hidden layer, not that product rounded to bf16
    (a 12.5 cm grid for centres of 16-32 m, finer than no attractor step)."""
    x = jax.random.normal(jax.random.key(2), (2, 3, 4, 8)) * 3
    module = SeedBinRegressor(16, 32, "softplus", dtype=jnp.bfloat16)
    variables = module.init(jax.random.key(0), x)
    # Large outputs, where softplus is the identity and bf16 rounding would show unchanged.
    p = jax.tree.map(lambda v: v, variables["params"])
    p["conv2"]["bias"] = p["conv2"]["bias"] + 28.0
    _, centres = module.apply({"params": p}, x)
    w1, b1 = p["conv1"]["kernel"][0, 0], p["conv1"]["bias"]
    w2, b2 = p["conv2"]["kernel"][0, 0], p["conv2"]["bias"]
    hidden = jax.nn.relu(
        (x.astype(jnp.bfloat16) @ w1.astype(jnp.bfloat16) + b1.astype(jnp.bfloat16))
    )
    expected = jax.nn.softplus(hidden.astype(jnp.float32) @ w2 + b2)
    assert centres.dtype == jnp.float32 and float(jnp.min(centres)) > 16
    np.testing.assert_allclose(np.asarray(centres), np.asarray(expected), rtol=2e-6)
    rounded = expected.astype(jnp.bfloat16).astype(jnp.float32)
    assert float(jnp.max(jnp.abs(rounded - expected))) > 1e-2  # what bf16 would have lost
