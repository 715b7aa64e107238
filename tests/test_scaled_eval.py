"""Tables 1 and 2 on a case built by hand (issue: R = gt / 7 and M_p = gt)."""

import json
import math

import numpy as np
import pytest

from avs_jax.evaluation.scaled_eval import ScalingEvaluator
from avs_jax.evaluation.tables import write_tables


def _gt():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 10.0, (3, 12, 16)).astype(np.float32)
    gt[:, :2] = 0.0     # sensor holes
    gt[0, 5, 5] = 40.0  # beyond max depth
    return gt


def test_hand_case_rgb_echoes_median_is_exact_and_no_scaling_is_worked_out():
    gt = _gt()
    ev = ScalingEvaluator(min_depth=1e-3, max_depth=30.0)
    # M_p equals the ground truth; R = gt / 7 given at half resolution would blur edges, so give
    # it at full resolution; M_p for "rgb" is off by a factor 2.
    rel = gt / 7.0
    ev.update(gt, {"rgb_echoes": gt, "rgb": 2.0 * gt}, {"depthnet": (rel, "depth")})
    t1, t2 = ev.table1(), ev.table2()
    assert t1["rgb_echoes"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert t1["rgb_echoes"]["a1"] == 1.0
    assert t1["rgb"]["abs_rel"] == pytest.approx(1.0, rel=1e-5)  # |gt - 2gt| / gt
    ours = t2["depthnet"]["rgb_echoes"]["median"]
    assert ours["abs_rel"] == pytest.approx(0.0, abs=1e-6) and ours["a1"] == 1.0
    assert t2["depthnet"]["rgb_echoes"]["mean_std"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    # Median scaling with M_p = 2 gt gives 2 gt: abs_rel 1, every ratio 2 -> delta1 = delta2 = 0.
    assert t2["depthnet"]["rgb"]["median"]["abs_rel"] == pytest.approx(1.0, rel=1e-5)
    # "No": pred = gt / 7 everywhere. abs_rel = 6/7, sq_rel = mean((6/7 gt)^2 / gt) = 36/49 mean(gt),
    # rmse_log = log 7, ratio 7 fails all thresholds.
    no = t2["depthnet"]["no"]["none"]
    valid = (gt > 0) & (gt < 30)
    assert no["abs_rel"] == pytest.approx(6 / 7, rel=1e-5)
    expected_sq = np.mean([np.mean(36 / 49 * g[v]) for g, v in zip(gt, valid)])
    assert no["sq_rel"] == pytest.approx(expected_sq, rel=1e-5)
    expected_rmse = np.mean([np.sqrt(np.mean((6 / 7 * g[v]) ** 2)) for g, v in zip(gt, valid)])
    assert no["rmse"] == pytest.approx(expected_rmse, rel=1e-5)
    assert no["rmse_log"] == pytest.approx(math.log(7), rel=1e-5)
    assert (no["a1"], no["a2"], no["a3"]) == (0.0, 0.0, 0.0)
    assert no["n_images"] == 3
    # The oracle reproduces the ground truth too.
    assert t2["depthnet"]["gt"]["median"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    # The constant reference: each image's valid-pixel median everywhere (numpy's median).
    const = [np.mean(np.abs(np.median(g[v]) - g[v]) / g[v]) for g, v in zip(gt, valid)]
    assert t2["depthnet"]["gt"]["constant"]["abs_rel"] == pytest.approx(np.mean(const), rel=1e-5)
    assert t2["depthnet"]["gt"]["constant"]["abs_rel"] > 0.1


def test_disparity_predictions_and_tables_written(tmp_path):
    gt = _gt()
    ev = ScalingEvaluator(min_depth=1e-3, max_depth=30.0)
    disp = 7.0 / np.where(gt > 0, gt, 1.0)  # disparity of gt / 7
    ev.update(gt, {"rgb_echoes": gt}, {"outside": (disp, "disparity")},
              example_mask=np.array([True, True, False]))
    t2 = ev.table2()
    assert t2["outside"]["rgb_echoes"]["median"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert t2["outside"]["rgb_echoes"]["median"]["n_images"] == 2
    json_path, md_path = write_tables(str(tmp_path), {"bv1": ev.table1()}, {"bv1": t2})
    data = json.load(open(json_path))
    assert set(data) == {"table1", "table2"}
    row = data["table2"]["bv1"]["outside"]["rgb_echoes"]["median"]
    assert set(row) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "n_images"}
    md = open(md_path).read()
    assert "Abs Rel" in md and "RGB-Echoes" in md
    # The best Abs Rel of the block (0.000, the scaled row) is bold; the "No" row is not.
    assert "**0.000**" in md


def test_table2_mask_leaves_table1_alone():
    """A sample left out of Table 2 (no external prediction) still counts in Table 1."""
    gt = _gt()
    ev = ScalingEvaluator(min_depth=1e-3, max_depth=30.0)
    # M_p wrong by 2x on image 2 only: Table 1 sees it, Table 2 (images 0, 1) does not.
    mp = gt.copy()
    mp[2] *= 2.0
    ev.update(gt, {"rgb_echoes": mp}, {"outside": (gt / 7.0, "depth")},
              example_mask=np.ones(3, bool), table2_mask=np.array([True, True, False]))
    t1, t2 = ev.table1(), ev.table2()
    assert t1["rgb_echoes"]["n_images"] == 3
    assert t1["rgb_echoes"]["abs_rel"] == pytest.approx(1 / 3, rel=1e-5)  # (0 + 0 + 1) / 3
    median = t2["outside"]["rgb_echoes"]["median"]
    assert median["n_images"] == 2
    assert median["abs_rel"] == pytest.approx(0.0, abs=1e-6)
