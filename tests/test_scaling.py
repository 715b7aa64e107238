"""Scaling (paper eq. 3 and the mean-std ablation) against hand values and invariants.

Tolerances: the expected values are exact (float64, or float32 values the computation cannot
round); each float32 operation on the way rounds by at most half an ulp (eps / 2), so a result of
k operations is within k eps / 2 of it, and a sum of N terms within N eps. A median is a
selection, exact by construction (the mean of two values: one rounding).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.scaling import (
    apply_scaling,
    masked_mean_std,
    masked_median,
    scale_factor_median,
    to_depth,
)

EPS = float(np.finfo(np.float32).eps)


def test_masked_median_matches_numpy_even_and_odd():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 10, size=(3, 5, 7)).astype(np.float32)
    mask = rng.uniform(size=x.shape) > 0.4
    mask[2] = False
    got = np.asarray(masked_median(jnp.asarray(x), jnp.asarray(mask)))
    for i in range(2):
        # float64 median of the float32 values; an even count's mean of two rounds once.
        assert got[i] == pytest.approx(np.median(x[i][mask[i]].astype(np.float64)), rel=EPS / 2)
    assert got[2] == 0.0
    # Even count: the mean of the two middle values.
    even = jnp.array([[[1.0, 2.0, 10.0, 20.0]]])
    assert float(masked_median(even, jnp.ones_like(even, bool))[0]) == 6.0


def test_median_scaling_hand_case():
    rel = jnp.array([[[1.0, 2.0, 3.0, 100.0]]])
    mp = jnp.array([[[4.0, 6.0, 8.0, 0.0]]])
    mask = jnp.array([[[True, True, True, False]]])
    # median(M_p) = 6, median(R) = 2 over the mask -> factor 3 (a division, a product: eps).
    out = apply_scaling(rel, "median", mask, mp)
    np.testing.assert_allclose(np.asarray(out), [[[3.0, 6.0, 9.0, 300.0]]], rtol=EPS)


def test_median_scaling_independent_of_global_factor_on_r():
    rng = np.random.default_rng(1)
    rel = jnp.asarray(rng.uniform(0.1, 1, (2, 6, 8)), jnp.float32)
    mp = jnp.asarray(rng.uniform(1, 20, (2, 6, 8)), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=(2, 6, 8)) > 0.3)
    a = apply_scaling(rel, "median", mask, mp)
    b = apply_scaling(rel * 37.5, "median", mask, mp)
    # Each side: R * 37.5, the medians' mean of two, the factor's division, the product, each
    # eps / 2 (and the same pixels are the medians: rounding keeps the order): 4 eps in all.
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=4 * EPS)


def test_mean_std_reproduces_affine_reference_exactly():
    rng = np.random.default_rng(2)
    mp = rng.uniform(1, 20, (2, 6, 8)).astype(np.float32)
    rel = 0.2 * mp + 3.0  # R = a * M_p + b with a > 0
    mask = jnp.asarray(rng.uniform(size=mp.shape) > 0.2)
    out = apply_scaling(jnp.asarray(rel), "mean_std", mask, jnp.asarray(mp))
    # Exact in float64 (up to the eps 1e-8 added to std(R) ~ 1). float32 rounds R by eps R, which
    # mean-std scales by std(M_p) / std(R) = 5: 5 eps (0.2 M_p + 3) / M_p <= 16 eps at M_p = 1.
    # The means and stds are float32 sums of N <= 40 terms, within (N + 4) eps, which
    # z * std + mean carries times (|mean| + 2 |z| std) / M_p <= (10.5 + 2 * 1.7 * 5.5) / 1 = 29:
    # 1.6e-4 in the worst case (measured: 2.1e-6).
    np.testing.assert_allclose(np.asarray(out), mp, rtol=2e-4)


def test_disparity_is_inverted_first_and_gt_oracle():
    gt = jnp.array([[[2.0, 4.0, 8.0]]])
    disp = 1.0 / (gt / 5.0)  # relative depth = gt / 5, given as disparity
    mask = jnp.ones_like(gt, bool)
    out = apply_scaling(disp, "gt_median", mask, gt, kind="disparity")
    # disp: 2 roundings and its inverse 1 (R within 1.5 eps); R_i / median(R) within 3 eps, and
    # the factor's division and the product: 4 eps.
    np.testing.assert_allclose(np.asarray(out), np.asarray(gt), rtol=4 * EPS)
    np.testing.assert_allclose(
        np.asarray(apply_scaling(disp, "no", mask, kind="disparity")),
        np.asarray(gt, np.float64) / 5.0,
        rtol=2 * EPS,
    )


def test_no_valid_pixel_gives_unit_factor_not_nan():
    rel = jnp.ones((1, 2, 2))
    f = scale_factor_median(rel, rel * 3, jnp.zeros((1, 2, 2), bool))
    assert float(f[0]) == 1.0


def test_nonpositive_disparity_has_no_depth():
    """A disparity <= 0 was clamped to 1e-6: a 1e6 m depth that passed for a prediction."""
    disp = jnp.array([[[0.0, -1.0, 2.0, 4.0, 8.0]]])
    np.testing.assert_array_equal(
        np.asarray(to_depth(disp, "disparity")), [[[np.nan, np.nan, 0.5, 0.25, 0.125]]]
    )
    # Scaled, the other pixels are scaled as if those two were not there: median(R) = 0.25 over
    # the three with depth, median(M_p) = 1 -> factor 4 (exact: powers of two).
    mask = jnp.ones(disp.shape, bool)
    out = apply_scaling(disp, "median", mask, jnp.ones(disp.shape), kind="disparity")
    np.testing.assert_array_equal(np.asarray(out), [[[np.nan, np.nan, 2.0, 1.0, 0.5]]])


def test_nan_in_r_or_mp_is_left_out_of_the_statistics():
    """NaN in R or M_p: each statistic is over the pixels where its map is finite; R's NaN stays
    NaN (no value is made up for it), every other pixel is scaled as without the NaN."""
    rel = jnp.array([[[1.0, 2.0, 3.0, jnp.nan]]])
    mp = jnp.array([[[10.0, 20.0, 30.0, jnp.nan]]])
    mask = jnp.ones(rel.shape, bool)
    # median(M_p) / median(R) = 20 / 2 = 10 (exact).
    assert float(scale_factor_median(rel, mp, mask)[0]) == 10.0
    med = apply_scaling(rel, "median", mask, mp)
    np.testing.assert_array_equal(np.asarray(med), [[[10.0, 20.0, 30.0, np.nan]]])
    # Mean-std: R's mean 2, std sqrt(2/3); M_p's 20, 10 sqrt(2/3): M = 10 R (it was NaN
    # everywhere). Sums of 3 terms and a few roundings: 8 eps; plus the 1e-8 added to
    # std(R) = 0.8 (1.2e-8 of z).
    ms = apply_scaling(rel, "mean_std", mask, mp)
    np.testing.assert_allclose(np.asarray(ms), [[[10.0, 20.0, 30.0, np.nan]]], rtol=8 * EPS + 2e-8)
    # A NaN in M_p alone: its median over its 3 finite pixels, 20, and R's over all 4, 2.5
    # (the NaN counted as the largest value gave 25 / 2.5).
    mp = jnp.array([[[10.0, 20.0, 30.0, jnp.nan]]])
    rel = jnp.array([[[1.0, 2.0, 3.0, 4.0]]])
    assert float(scale_factor_median(rel, mp, mask)[0]) == 8.0
    # The statistics alone: NaN and inf left out, in the mask or outside it (outside, NaN made
    # the mean NaN through NaN * 0).
    x = jnp.array([[[1.0, jnp.inf, 3.0, jnp.nan, -jnp.inf, jnp.nan]]])
    mask = jnp.array([[[True, True, True, True, True, False]]])
    assert float(masked_median(x, mask)[0]) == 2.0
    mean, std = masked_mean_std(x, mask)
    assert (float(mean[0]), float(std[0])) == (2.0, 1.0)


def test_image_without_a_finite_valid_pixel_is_returned_unscaled():
    """No pixel to take a scale from (M_p all NaN, or an empty mask): R as it is (factor 1), for
    both methods, where mean-std gave NaN everywhere and, with an empty mask, zeros."""
    rel = jnp.array([[[1.0, 2.0]], [[3.0, 4.0]]])
    mp = jnp.array([[[jnp.nan, jnp.nan]], [[6.0, 8.0]]])
    mask = jnp.array([[[True, True]], [[False, False]]])
    for method in ("median", "mean_std"):
        out = np.asarray(apply_scaling(rel, method, mask, mp))
        np.testing.assert_array_equal(out, np.asarray(rel), err_msg=method)


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


def _ramp_scene():
    """A [1, 10, 10] ground truth 1.00, 1.04, ..., 4.96 m (median 2.98, mean 2.98) and a
    relative depth proportional to it: the case eq. 3 is made for."""
    gt = (1.0 + np.arange(100) / 25.0).reshape(1, 10, 10).astype(np.float32)
    return gt, gt / 10.0, np.ones(gt.shape, bool)


def _abs_rel(pred, gt, sel):
    pred, gt = np.asarray(pred)[sel], gt[sel]
    return float(np.mean(np.abs(pred - gt) / gt))


def test_median_scaling_shrugs_off_outliers_in_mp_that_move_mean_std():
    """The paper's reason for eq. 3 (Sec. 3.2.2): M_p's mean and spread follow its outliers.

    Two pixels of M_p read 50 m (a spurious far return; the real BV2 sample in shared/data holds a
    15.7 m block in a ~1 m scene). Sorted, M_p's middle pair moves up one place per outlier: the
    median becomes (3.04 + 3.08) / 2 = 3.06, so every pixel is off by 3.06 / 2.98 - 1 = 2.68%.
    mean-std copies M_p's mean, (298 - 1.00 - 1.04 + 2 * 50) / 100 = 3.9596, onto the output.
    """
    gt, rel, mask = _ramp_scene()
    mp = gt.copy()
    mp.reshape(-1)[:2] = 50.0
    med = apply_scaling(jnp.asarray(rel), "median", jnp.asarray(mask), jnp.asarray(mp))
    ms = apply_scaling(jnp.asarray(rel), "mean_std", jnp.asarray(mask), jnp.asarray(mp))
    # The hand values use the decimal gt; float32's is within eps of it, which 3.06 / 2.98 - 1
    # magnifies 40-fold (~5e-6), and the mean of 3.9596 is a sum of 100 terms (~1e-5).
    assert _abs_rel(med, gt, mask) == pytest.approx(3.06 / 2.98 - 1.0, rel=1e-4)
    assert float(np.mean(np.asarray(ms))) == pytest.approx(3.9596, rel=1e-4)
    assert _abs_rel(ms, gt, mask) > 10 * _abs_rel(med, gt, mask)


def test_median_scaling_keeps_the_good_pixels_when_r_has_outliers():
    """Outliers in R (a relative model calling two pixels 100x too far, e.g. through a window):
    R's median does not move, so median scaling leaves the other 98 pixels exact; R's spread
    does, so mean-std squeezes them towards M_p's mean (a near-constant map)."""
    gt, rel, mask = _ramp_scene()
    rel = rel.copy()
    rel.reshape(-1)[-2:] *= 100.0
    good = np.ones(gt.shape, bool)
    good.reshape(-1)[-2:] = False
    med = apply_scaling(jnp.asarray(rel), "median", jnp.asarray(mask), jnp.asarray(gt))
    ms = apply_scaling(jnp.asarray(rel), "mean_std", jnp.asarray(mask), jnp.asarray(gt))
    np.testing.assert_allclose(np.asarray(med)[good], gt[good], rtol=1e-5)
    # R's standardised good pixels span (0.488 - 0.100) / std(R) = 0.388 / 6.88 = 0.056, so the
    # output spans 0.056 * std(gt) = 0.056 * 1.155 = 0.065 m where the truth spans 3.88 m.
    assert np.ptp(np.asarray(ms)[good]) == pytest.approx(0.0652, rel=1e-2)
    assert _abs_rel(ms, gt, good) > 0.4
