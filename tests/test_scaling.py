"""Scaling (paper eq. 3 and the mean-std ablation) against hand values and invariants."""

import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.scaling import apply_scaling, masked_median, scale_factor_median


def test_masked_median_matches_numpy_even_and_odd():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 10, size=(3, 5, 7)).astype(np.float32)
    mask = rng.uniform(size=x.shape) > 0.4
    mask[2] = False
    got = np.asarray(masked_median(jnp.asarray(x), jnp.asarray(mask)))
    for i in range(2):
        assert got[i] == pytest.approx(np.median(x[i][mask[i]]), rel=1e-6)
    assert got[2] == 0.0
    # Even count: the mean of the two middle values.
    even = jnp.array([[[1.0, 2.0, 10.0, 20.0]]])
    assert float(masked_median(even, jnp.ones_like(even, bool))[0]) == 6.0


def test_median_scaling_hand_case():
    rel = jnp.array([[[1.0, 2.0, 3.0, 100.0]]])
    mp = jnp.array([[[4.0, 6.0, 8.0, 0.0]]])
    mask = jnp.array([[[True, True, True, False]]])
    # median(M_p) = 6, median(R) = 2 over the mask -> factor 3.
    out = apply_scaling(rel, "median", mask, mp)
    np.testing.assert_allclose(np.asarray(out), [[[3.0, 6.0, 9.0, 300.0]]])


def test_median_scaling_independent_of_global_factor_on_r():
    rng = np.random.default_rng(1)
    rel = jnp.asarray(rng.uniform(0.1, 1, (2, 6, 8)), jnp.float32)
    mp = jnp.asarray(rng.uniform(1, 20, (2, 6, 8)), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=(2, 6, 8)) > 0.3)
    a = apply_scaling(rel, "median", mask, mp)
    b = apply_scaling(rel * 37.5, "median", mask, mp)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


def test_mean_std_reproduces_affine_reference_exactly():
    rng = np.random.default_rng(2)
    mp = rng.uniform(1, 20, (2, 6, 8)).astype(np.float32)
    rel = 0.2 * mp + 3.0  # R = a * M_p + b with a > 0
    mask = jnp.asarray(rng.uniform(size=mp.shape) > 0.2)
    out = apply_scaling(jnp.asarray(rel), "mean_std", mask, jnp.asarray(mp))
    np.testing.assert_allclose(np.asarray(out), mp, rtol=1e-4)


def test_disparity_is_inverted_first_and_gt_oracle():
    gt = jnp.array([[[2.0, 4.0, 8.0]]])
    disp = 1.0 / (gt / 5.0)  # relative depth = gt / 5, given as disparity
    mask = jnp.ones_like(gt, bool)
    out = apply_scaling(disp, "gt_median", mask, gt, kind="disparity")
    np.testing.assert_allclose(np.asarray(out), np.asarray(gt), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(apply_scaling(disp, "no", mask, kind="disparity")),
                               np.asarray(gt) / 5.0, rtol=1e-6)


def test_no_valid_pixel_gives_unit_factor_not_nan():
    rel = jnp.ones((1, 2, 2))
    f = scale_factor_median(rel, rel * 3, jnp.zeros((1, 2, 2), bool))
    assert float(f[0]) == 1.0


def test_bad_method_and_kind_are_errors():
    with pytest.raises(ValueError, match="scaling method"):
        apply_scaling(jnp.ones((1, 1, 1)), "mode", jnp.ones((1, 1, 1), bool), jnp.ones((1, 1, 1)))
    with pytest.raises(ValueError, match="kind"):
        apply_scaling(jnp.ones((1, 1, 1)), "no", jnp.ones((1, 1, 1), bool), kind="inverse")


def test_masked_median_exact_with_negatives_ties_and_extremes():
    x = np.array([[[-3.5, -0.0, 0.0, 2.0, 2.0, 1e30, -1e-30, 7.25]]], np.float32)
    mask = np.ones_like(x, bool)
    assert float(masked_median(jnp.asarray(x), jnp.asarray(mask))[0]) == np.median(x)
    mask[0, 0, 4:] = False  # [-3.5, -0, 0, 2] -> median 0
    assert float(masked_median(jnp.asarray(x), jnp.asarray(mask))[0]) == 0.0
