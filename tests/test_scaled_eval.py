"""Tables 1 and 2 on a case built by hand (issue: R = gt / 7 and M_p = gt); bad maps named.

Tolerances: an expected value is computed in float64 from the float32 inputs (or is exact). A
per-image metric is a float32 mean of N <= 160 terms, each a few roundings: within (N + 8) eps of
it in any order of summation, whatever the CPU (the image average is taken in float64).
"""

import json
import math

import numpy as np
import pytest

from avs_jax.errors import BadInputError
from avs_jax.evaluation.scaled_eval import ScalingEvaluator
from avs_jax.evaluation.tables import table1_markdown, table2_markdown, write_tables

EPS = float(np.finfo(np.float32).eps)


def _gt():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 10.0, (3, 12, 16)).astype(np.float32)
    gt[:, :2] = 0.0  # sensor holes
    gt[0, 5, 5] = 40.0  # beyond max depth
    return gt


def _model_map(gt, factor=1.0):
    """What a model agreeing with `gt` (times `factor`) predicts: positive everywhere, also in
    the holes (a model's map is; those pixels enter no statistic and no metric)."""
    return (np.where(gt > 0, gt, 5.0) * np.float32(factor)).astype(np.float32)


def _rtol(gt, max_depth=30.0):
    n = int(((gt > 0) & (gt < max_depth)).sum(axis=(1, 2)).max())
    return (n + 8) * EPS


def test_hand_case_rgb_echoes_median_is_exact_and_no_scaling_is_worked_out():
    gt = _gt()
    rtol = _rtol(gt)
    ev = ScalingEvaluator(min_depth=1e-3, max_depth=30.0)
    # M_p equals the ground truth; R = gt / 7 given at half resolution would blur edges, so give
    # it at full resolution; M_p for "rgb" is off by a factor 2.
    rel = _model_map(gt) / np.float32(7.0)
    ev.update(
        gt, {"rgb_echoes": _model_map(gt), "rgb": _model_map(gt, 2.0)}, {"depthnet": (rel, "depth")}
    )
    t1, t2 = ev.table1(), ev.table2()
    assert t1["rgb_echoes"]["abs_rel"] == 0.0 and t1["rgb_echoes"]["a1"] == 1.0  # pred == gt
    assert t1["rgb"]["abs_rel"] == pytest.approx(1.0, rel=rtol)  # |gt - 2gt| / gt
    # R's median pixel is gt's: the factor is 7 within 2 eps, R = gt / 7 within eps / 2, and the
    # product rounds once: every pixel within 3 eps of gt.
    ours = t2["depthnet"]["rgb_echoes"]["median"]
    assert ours["abs_rel"] == pytest.approx(0.0, abs=3 * EPS) and ours["a1"] == 1.0
    # Mean-std (exact in float64) carries the float32 sums of N terms (N + 4) eps times
    # (|mean| + 2 |z| std) / gt <= (5.5 + 2 * 1.8 * 2.6) / 1 = 15: 15 (N + 4) eps <= 3e-4.
    assert t2["depthnet"]["rgb_echoes"]["mean_std"]["abs_rel"] == pytest.approx(0.0, abs=15 * rtol)
    # Median scaling with M_p = 2 gt gives 2 gt: abs_rel 1, every ratio 2 -> delta1 = delta2 = 0.
    assert t2["depthnet"]["rgb"]["median"]["abs_rel"] == pytest.approx(1.0, rel=rtol + 3 * EPS)
    # "No": pred = gt / 7 everywhere. abs_rel = 6/7, sq_rel = mean((6/7 gt)^2 / gt)
    # = 36/49 mean(gt), rmse_log = log 7, ratio 7 fails all thresholds. In float64 from the
    # float32 prediction (gt / 7 rounded), which the formulas match to eps.
    no = t2["depthnet"]["no"]["none"]
    valid = (gt > 0) & (gt < 30)
    g64, p64 = gt.astype(np.float64), rel.astype(np.float64)

    def per_image(f):
        return np.mean([np.mean(f(g[v], p[v])) for g, p, v in zip(g64, p64, valid)])

    expected_abs = per_image(lambda g, p: np.abs(g - p) / g)
    np.testing.assert_allclose(expected_abs, 6 / 7, rtol=EPS)
    assert no["abs_rel"] == pytest.approx(expected_abs, rel=rtol)
    expected_sq = per_image(lambda g, p: (g - p) ** 2 / g)
    np.testing.assert_allclose(expected_sq, per_image(lambda g, p: 36 / 49 * g), rtol=2 * EPS)
    assert no["sq_rel"] == pytest.approx(expected_sq, rel=rtol)
    expected_rmse = np.mean(
        [np.sqrt(np.mean((g[v] - p[v]) ** 2)) for g, p, v in zip(g64, p64, valid)]
    )
    assert no["rmse"] == pytest.approx(expected_rmse, rel=rtol)
    expected_log = np.mean(
        [np.sqrt(np.mean((np.log(g[v]) - np.log(p[v])) ** 2)) for g, p, v in zip(g64, p64, valid)]
    )
    np.testing.assert_allclose(expected_log, math.log(7), rtol=EPS)
    assert no["rmse_log"] == pytest.approx(expected_log, rel=rtol)
    assert (no["a1"], no["a2"], no["a3"]) == (0.0, 0.0, 0.0)
    assert no["n_images"] == 3
    # The oracle reproduces the ground truth too (as the rgb_echoes row: 3 eps).
    assert t2["depthnet"]["gt"]["median"]["abs_rel"] == pytest.approx(0.0, abs=3 * EPS)
    # The constant reference: each image's valid-pixel median everywhere (numpy's median).
    const = [np.mean(np.abs(np.median(g[v]) - g[v]) / g[v]) for g, v in zip(g64, valid)]
    assert t2["depthnet"]["gt"]["constant"]["abs_rel"] == pytest.approx(np.mean(const), rel=rtol)
    assert t2["depthnet"]["gt"]["constant"]["abs_rel"] > 0.1
    # Table 1's references: M_p with its scale taken away (GT median / its median per image).
    # "rgb" is 2 gt: its structure is perfect, the factor 1/2 exact, so the row is exact; the
    # constant is Table 2's constant (one computation) and counts the same images.
    oracle = ev.table1_oracle()
    assert set(oracle) == {"rgb_echoes", "rgb", "constant"}
    assert oracle["rgb"]["abs_rel"] == 0.0 and oracle["rgb"]["a1"] == 1.0
    assert oracle["rgb_echoes"]["abs_rel"] == 0.0
    assert oracle["constant"] == t2["depthnet"]["gt"]["constant"]
    assert oracle["constant"]["n_images"] == 3


def test_table1_oracle_scales_each_image_by_its_own_medians():
    # Per image, M_p = gt * c_i * (1 + noise): the reference divides c_i out, leaving the noise.
    gt = _gt()
    rng = np.random.default_rng(1)
    noise = rng.uniform(-0.2, 0.2, gt.shape).astype(np.float32)
    factors = np.array([0.5, 3.0, 11.0], np.float32)[:, None, None]
    mp = (_model_map(gt) * factors * (1 + noise)).astype(np.float32)
    ev = ScalingEvaluator(min_depth=1e-3, max_depth=30.0)
    ev.update(gt, {"rgb": mp}, {})
    got = ev.table1_oracle()["rgb"]["abs_rel"]
    valid = (gt > 0) & (gt < 30)
    expected = []
    for g, m, v in zip(gt.astype(np.float64), mp.astype(np.float64), valid):
        # numpy's median, as avs_jax/scaling.py's (float32 there: within a few eps).
        pred = m[v] * np.median(g[v]) / np.median(m[v])
        expected.append(np.mean(np.abs(pred - g[v]) / g[v]))
    assert got == pytest.approx(np.mean(expected), rel=_rtol(gt) + 4 * EPS)
    assert ev.table1()["rgb"]["abs_rel"] > 1.0  # unscaled, the factors dominate


def test_disparity_predictions_and_tables_written(tmp_path):
    gt = _gt()
    ev = ScalingEvaluator(min_depth=1e-3, max_depth=30.0)
    disp = np.float32(7.0) / _model_map(gt)  # disparity of gt / 7
    ev.update(
        gt,
        {"rgb_echoes": _model_map(gt)},
        {"outside": (disp, "disparity")},
        example_mask=np.array([True, True, False]),
    )
    t2 = ev.table2()
    # As the depth case, with R inverted twice (1 eps more): 4 eps.
    assert t2["outside"]["rgb_echoes"]["median"]["abs_rel"] == pytest.approx(0.0, abs=4 * EPS)
    assert t2["outside"]["rgb_echoes"]["median"]["n_images"] == 2
    json_path, md_path = write_tables(
        str(tmp_path), {"bv1": ev.table1()}, {"bv1": t2}, {"bv1": ev.table1_oracle()}
    )
    data = json.load(open(json_path))
    assert set(data) == {"table1", "table1_oracle", "table2"}
    assert set(data["table1_oracle"]["bv1"]) == {"rgb_echoes", "constant"}
    row = data["table2"]["bv1"]["outside"]["rgb_echoes"]["median"]
    assert set(row) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "n_images"}
    md = open(md_path).read()
    assert "Abs Rel" in md and "RGB-Echoes" in md
    # The best Abs Rel of the block (0.000, the scaled row) is bold; the "No" row is not.
    assert "**0.000**" in md
    # Table 1's references follow its models, never bold.
    table1_md = md.split("Table 2")[0]
    assert "| BV1 | AVS-Net (RGB-Echoes), scaled by GT median (oracle) | 0.000 |" in table1_md
    assert "| BV1 | constant depth (oracle) |" in table1_md
    assert table1_md.index("scaled by GT median") < table1_md.index("constant depth")


def test_table2_mask_leaves_table1_alone():
    """A sample left out of Table 2 (no external prediction) still counts in Table 1."""
    gt = _gt()
    ev = ScalingEvaluator(min_depth=1e-3, max_depth=30.0)
    # M_p wrong by 2x on image 2 only: Table 1 sees it, Table 2 (images 0, 1) does not.
    mp = _model_map(gt)
    mp[2] *= 2.0
    ev.update(
        gt,
        {"rgb_echoes": mp},
        {"outside": (_model_map(gt) / np.float32(7.0), "depth")},
        example_mask=np.ones(3, bool),
        table2_mask=np.array([True, True, False]),
    )
    t1, t2 = ev.table1(), ev.table2()
    assert t1["rgb_echoes"]["n_images"] == 3
    # (0 + 0 + 1) / 3, each term exact (gt - 2 gt = -gt) up to the mean of N ones.
    assert t1["rgb_echoes"]["abs_rel"] == pytest.approx(1 / 3, rel=_rtol(gt))
    median = t2["outside"]["rgb_echoes"]["median"]
    assert median["n_images"] == 2
    assert median["abs_rel"] == pytest.approx(0.0, abs=3 * EPS)


def test_nan_in_a_models_map_names_the_model_and_sample_and_adds_nothing():
    """A diverged checkpoint: NaN in its M_p is an error naming it and the sample, not a NaN
    in Table 1; the same NaN in a padding row is no error."""
    gt = _gt()
    mp = _model_map(gt)
    mp[1, 3, 4:7] = np.nan
    ids = ["loc/1", "loc/2", "loc/3"]
    ev = ScalingEvaluator(1e-3, 30.0, origins={"rgb_echoes": "runs/avsnet"})
    with pytest.raises(
        BadInputError,
        match=(
            r"^model 'rgb_echoes' \(runs/avsnet\), sample 'loc/2': 3 NaN/inf of its 192 "
            r"predicted depth values; they must be finite and > 0 \(a diverged checkpoint\?\)$"
        ),
    ):
        ev.update(gt, {"rgb_echoes": mp}, {}, sample_ids=ids)
    assert ev.table1() == {}
    ev.update(gt, {"rgb_echoes": mp}, {}, example_mask=np.array([True, False, True]))
    assert ev.table1()["rgb_echoes"]["n_images"] == 3 - 1


def test_nonpositive_disparity_or_inf_depth_of_a_relative_model_is_named():
    gt = _gt()
    disp = np.float32(7.0) / _model_map(gt)
    disp[0, 0, :2] = 0.0
    disp[0, 1, 0] = -1.0
    disp[0, 1, 1] = np.inf
    ev = ScalingEvaluator(1e-3, 30.0, origins={"outside": "preds/"})
    with pytest.raises(
        BadInputError,
        match=(
            r"^model 'outside' \(preds/\), sample #0 of the batch: 1 NaN/inf and 3 <= 0 of its "
            r"192 predicted disparity values;"
        ),
    ):
        ev.update(gt, {"rgb_echoes": _model_map(gt)}, {"outside": (disp, "disparity")})
    # A row Table 2 does not count (no prediction for it) is not checked.
    ev.update(
        gt,
        {"rgb_echoes": _model_map(gt)},
        {"outside": (disp, "disparity")},
        table2_mask=np.array([False, True, True]),
    )
    assert ev.table2()["outside"]["no"]["none"]["n_images"] == 2


def _row(**values):
    row = {k: 0.5 for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")}
    row.update(values, n_images=3)
    return row


def test_missing_or_nan_values_are_never_ranked_nor_bold(tmp_path):
    """NaN compared as the "best" Abs Rel and was printed bold; None shows as "–" unranked."""
    md = table1_markdown(
        {
            "bv2": {
                "rgb": _row(abs_rel=float("nan")),
                "echoes": _row(abs_rel=0.7),
                "rgb_echoes": _row(abs_rel=None),
            }
        }
    )
    lines = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| BV2")}
    assert "**" not in lines["AVS-Net (Only-RGB)"].split(" | ")[2]  # nan, not bold
    assert lines["Echoes only"].split(" | ")[2] == "**0.700**"
    assert lines["AVS-Net (RGB-Echoes)"].split(" | ")[2] == "–"
    md2 = table2_markdown(
        {"bv1": {"m": {"no": {"none": _row(abs_rel=None)}, "rgb": {"median": _row(abs_rel=0.9)}}}}
    )
    assert "**0.900**" in md2 and "| – |" in md2
    # write_tables refuses a NaN, naming the row, and writes nothing.
    with pytest.raises(ValueError, match=r"^tables: table2 bv1 m rgb median: abs_rel is nan;"):
        write_tables(
            str(tmp_path), {}, {"bv1": {"m": {"rgb": {"median": _row(abs_rel=float("nan"))}}}}
        )
    assert not list(tmp_path.iterdir())
