"""Evaluation metrics against hand-computed values, masks and averaging over images.

Tolerances: a float32 result is compared with its value in float64 (a hand value, or one computed
from the same float32 inputs). A mean of N terms, each a few float32 operations (XLA:CPU's log is
within 2 ulp), is within (N + 8) eps of it in any order of summation; the tests say so where they
use it, rather than a last-bit rtol that a different CPU or XLA version may not meet.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.metrics import MetricAccumulator, evaluate_arrays, per_image_metrics

EPS = float(np.finfo(np.float32).eps)


def _rtol(n_terms: int) -> float:
    """Relative error bound of a float32 mean of `n_terms` terms of a few operations each."""
    return (n_terms + 8) * EPS


def test_hand_computed_image():
    # Valid pixels: gt 2 (pred 1) and gt 4 (pred 4); 0 and 40 (>= max 30) are invalid.
    gt = jnp.array([[[2.0, 4.0], [0.0, 40.0]]])
    pred = jnp.array([[[1.0, 4.0], [5.0, 5.0]]])
    m = {k: float(v[0]) for k, v in per_image_metrics(pred, gt, 1e-3, 30.0).items()}
    assert m["n_valid"] == 2 and m["n_nonfinite"] == 0
    rtol = _rtol(2)
    assert m["abs_rel"] == pytest.approx(0.25, rel=rtol)  # (1/2 + 0) / 2
    assert m["sq_rel"] == pytest.approx(0.25, rel=rtol)  # (1/2 + 0) / 2
    assert m["rmse"] == pytest.approx(math.sqrt(0.5), rel=rtol)  # sqrt((1 + 0) / 2)
    assert m["rmse_log"] == pytest.approx(math.log(2) / math.sqrt(2), rel=rtol)
    # max ratio 2 fails 1.25, 1.5625 and 1.953125; ratio 1 passes all three.
    assert (m["a1"], m["a2"], m["a3"]) == (0.5, 0.5, 0.5)


def test_thresholds_are_strict_and_symmetric():
    gt = jnp.array([[[1.0, 1.0, 1.0, 1.0]]])
    pred = jnp.array([[[1.2, 1 / 1.2, 1.3, 1.25**2 * 0.99]]])
    m = per_image_metrics(pred, gt, 1e-3, 10.0)
    # 1.2 and 1/1.2 pass delta<1.25 (the ratio is symmetric); 1.3 and 1.547 do not. Counts of 4
    # pixels: exact.
    assert float(m["a1"][0]) == 0.5
    assert float(m["a2"][0]) == 1.0


def test_prediction_clipped_to_depth_range():
    gt = np.array([[[10.0, 10.0]]], np.float32)
    pred = np.array([[[0.0, 100.0]]], np.float32)
    m = per_image_metrics(jnp.asarray(pred), jnp.asarray(gt), 1.0, 20.0)
    # pred clipped to 1 and 20: |10-1|/10 = 0.9, |10-20|/10 = 1.0.
    assert float(m["abs_rel"][0]) == pytest.approx(0.95, rel=_rtol(2))
    assert np.isfinite(float(m["rmse_log"][0]))


def test_nan_inf_and_empty_images_are_left_out_and_counted():
    gt = np.array(
        [
            [[np.nan, np.inf], [-1.0, 3.0]],  # only 3.0 is valid
            [[0.0, np.nan], [30.0, 31.0]],
        ],  # nothing valid (30 is not < 30)
        dtype=np.float32,
    )
    pred = np.full((2, 2, 2), 6.0, np.float32)
    out = evaluate_arrays(pred, gt, 1e-3, 30.0)
    assert out["n_images"] == 1 and out["n_skipped"] == 1
    assert out["abs_rel"] == pytest.approx(1.0, rel=_rtol(1))  # |3 - 6| / 3
    assert all(np.isfinite(out[k]) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1"))


def test_average_is_over_images_not_pixels():
    # Image 1: one valid pixel with abs_rel 1; image 2: three perfect pixels.
    gt = np.array([[[1.0, 0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0, 0.0]]], np.float32)
    pred = np.array([[[2.0, 9.0, 9.0, 9.0]], [[1.0, 2.0, 3.0, 9.0]]], np.float32)
    out = evaluate_arrays(pred, gt, 1e-3, 10.0)
    # (1 + 0) / 2; a pixel average would give 0.25.
    assert out["abs_rel"] == pytest.approx(0.5, rel=_rtol(3))


def test_prediction_resized_to_ground_truth():
    gt = np.full((1, 8, 12), 5.0, np.float32)
    pred = np.full((1, 4, 6), 4.0, np.float32)
    out = evaluate_arrays(pred, gt, 1e-3, 10.0)
    # A constant map resizes to the same constant (the bilinear weights sum to 1, to a few eps).
    assert out["abs_rel"] == pytest.approx(0.2, rel=_rtol(8 * 12))


def test_accumulator_respects_padding_mask():
    acc = MetricAccumulator()
    m = per_image_metrics(jnp.ones((2, 1, 1)), jnp.array([[[2.0]], [[4.0]]]), 1e-3, 10.0)
    acc.update(m, example_mask=np.array([True, False]))
    assert acc.result()["n_images"] == 1
    assert acc.result()["abs_rel"] == pytest.approx(0.5, rel=_rtol(1))


def test_nonfinite_prediction_pixels_are_counted():
    """per_image_metrics (jittable, cannot raise): NaN/inf predictions at valid pixels are
    counted and make that image's metrics NaN; at invalid pixels they do not matter."""
    gt = jnp.array([[[2.0, 4.0, 5.0, 0.0]], [[2.0, 4.0, 5.0, 0.0]]])
    pred = jnp.array([[[1.0, jnp.nan, jnp.inf, jnp.nan]], [[1.0, 4.0, 5.0, jnp.nan]]])
    m = per_image_metrics(pred, gt, 1e-3, 30.0)
    # inf is counted, not clipped to max_depth and scored as a 30 m prediction.
    assert m["n_nonfinite"].tolist() == [2, 0] and m["n_valid"].tolist() == [3, 3]
    assert all(np.isnan(float(m[k][0])) for k in ("abs_rel", "rmse", "a1"))
    # Image 1's NaN is at an invalid pixel: (1/2 + 0 + 0) / 3.
    assert float(m["abs_rel"][1]) == pytest.approx(1 / 6, rel=_rtol(3))


def test_evaluate_arrays_names_the_image_with_a_nan_pixel():
    """One NaN pixel in image 6 of 10 (the second batch of 4): an error naming it, not a NaN."""
    gt = np.full((10, 2, 2), 3.0, np.float32)
    gt[6, 0, 0] = 0.0  # an invalid pixel: 3 valid ones left
    pred = np.full((10, 2, 2), 3.0, np.float32)
    pred[6, 1, 1] = np.nan
    with pytest.raises(
        ValueError,
        match=r"^image 6: the prediction is NaN or inf at 1 of its 3 "
        r"valid ground-truth pixels$",
    ):
        evaluate_arrays(pred, gt, 1e-3, 10.0, batch_size=4)
    # The same NaN at an invalid ground-truth pixel affects no number: no error.
    gt[6, 1, 1] = 0.0
    out = evaluate_arrays(pred, gt, 1e-3, 10.0, batch_size=4)
    assert out["n_images"] == 10 and out["abs_rel"] == 0.0


def test_accumulator_ignores_nan_in_padding_and_refuses_a_nan_metric():
    acc = MetricAccumulator()
    m = per_image_metrics(
        jnp.array([[[1.0]], [[jnp.nan]]]), jnp.array([[[2.0]], [[4.0]]]), 1e-3, 10.0
    )
    acc.update(m, example_mask=np.array([True, False]))  # the NaN row is padding
    assert acc.result()["n_images"] == 1
    # A hand-made row with a NaN metric (image 1 + 1 of the batch) is refused, not averaged.
    row = {k: np.array([0.5]) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")}
    row.update(abs_rel=np.array([np.nan]), n_valid=np.array([4]))
    with pytest.raises(ValueError, match=r"^image 2: abs_rel is nan$"):
        acc.update(row)
    assert acc.result()["n_images"] == 1
    assert acc.result()["abs_rel"] == pytest.approx(0.5, rel=_rtol(1))


def test_min_depth_must_be_positive():
    """min_depth 0 let a zero prediction through the clip: rmse_log was inf, silently."""
    gt = np.full((1, 2, 2), 3.0, np.float32)
    with pytest.raises(ValueError, match=r"min_depth must be > 0 .*got 0\.0"):
        evaluate_arrays(np.zeros_like(gt), gt, 0.0, 10.0)
