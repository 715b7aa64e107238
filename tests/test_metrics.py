"""Evaluation metrics against hand-computed values, masks and averaging over images."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.metrics import MetricAccumulator, evaluate_arrays, per_image_metrics


def test_hand_computed_image():
    # Valid pixels: gt 2 (pred 1) and gt 4 (pred 4); 0 and 40 (>= max 30) are invalid.
    gt = jnp.array([[[2.0, 4.0], [0.0, 40.0]]])
    pred = jnp.array([[[1.0, 4.0], [5.0, 5.0]]])
    m = {k: float(v[0]) for k, v in per_image_metrics(pred, gt, 1e-3, 30.0).items()}
    assert m["n_valid"] == 2
    assert m["abs_rel"] == pytest.approx(0.25)            # (1/2 + 0) / 2
    assert m["sq_rel"] == pytest.approx(0.25)             # (1/2 + 0) / 2
    assert m["rmse"] == pytest.approx(math.sqrt(0.5))     # sqrt((1 + 0) / 2)
    assert m["rmse_log"] == pytest.approx(math.log(2) / math.sqrt(2), rel=1e-6)
    # max ratio 2 fails 1.25, 1.5625 and 1.953125; ratio 1 passes all three.
    assert (m["a1"], m["a2"], m["a3"]) == (0.5, 0.5, 0.5)


def test_thresholds_are_strict_and_symmetric():
    gt = jnp.array([[[1.0, 1.0, 1.0, 1.0]]])
    pred = jnp.array([[[1.2, 1 / 1.2, 1.3, 1.25 ** 2 * 0.99]]])
    m = per_image_metrics(pred, gt, 1e-3, 10.0)
    # 1.2 and 1/1.2 pass delta<1.25 (the ratio is symmetric); 1.3 and 1.547 do not.
    assert float(m["a1"][0]) == pytest.approx(0.5)
    assert float(m["a2"][0]) == pytest.approx(1.0)


def test_prediction_clipped_to_depth_range():
    gt = jnp.array([[[10.0, 10.0]]])
    pred = jnp.array([[[0.0, 100.0]]])
    m = per_image_metrics(pred, gt, 1.0, 20.0)
    # pred clipped to 1 and 20: |10-1|/10 = 0.9, |10-20|/10 = 1.0.
    assert float(m["abs_rel"][0]) == pytest.approx(0.95)
    assert np.isfinite(float(m["rmse_log"][0]))


def test_nan_inf_and_empty_images_are_left_out_and_counted():
    gt = np.array([[[np.nan, np.inf], [-1.0, 3.0]],   # only 3.0 is valid
                   [[0.0, np.nan], [30.0, 31.0]]],     # nothing valid (30 is not < 30)
                  dtype=np.float32)
    pred = np.full((2, 2, 2), 6.0, np.float32)
    out = evaluate_arrays(pred, gt, 1e-3, 30.0)
    assert out["n_images"] == 1 and out["n_skipped"] == 1
    assert out["abs_rel"] == pytest.approx(1.0)  # |3 - 6| / 3
    assert all(np.isfinite(out[k]) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1"))


def test_average_is_over_images_not_pixels():
    # Image 1: one valid pixel with abs_rel 1; image 2: three perfect pixels.
    gt = np.array([[[1.0, 0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0, 0.0]]], np.float32)
    pred = np.array([[[2.0, 9.0, 9.0, 9.0]], [[1.0, 2.0, 3.0, 9.0]]], np.float32)
    out = evaluate_arrays(pred, gt, 1e-3, 10.0)
    assert out["abs_rel"] == pytest.approx(0.5)  # (1 + 0) / 2, a pixel average would give 0.25


def test_prediction_resized_to_ground_truth():
    gt = np.full((1, 8, 12), 5.0, np.float32)
    pred = np.full((1, 4, 6), 4.0, np.float32)
    out = evaluate_arrays(pred, gt, 1e-3, 10.0)
    assert out["abs_rel"] == pytest.approx(0.2)


def test_accumulator_respects_padding_mask():
    acc = MetricAccumulator()
    m = per_image_metrics(jnp.ones((2, 1, 1)), jnp.array([[[2.0]], [[4.0]]]), 1e-3, 10.0)
    acc.update(m, example_mask=np.array([True, False]))
    assert acc.result()["n_images"] == 1
    assert acc.result()["abs_rel"] == pytest.approx(0.5)
