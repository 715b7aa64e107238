"""External predictions: found by sample id, bad files named; figures are written."""

import re

import numpy as np
import pytest
from eval_stub import stub_config, stub_evaluation
from PIL import Image

from avs_jax.errors import BadInputError
from avs_jax.evaluation import evaluate as evaluate_mod
from avs_jax.evaluation import external as external_mod
from avs_jax.evaluation import figures
from avs_jax.evaluation.external import PredictionError, load_prediction


def test_prediction_lookup_by_sample_id(tmp_path):
    np.save(tmp_path / "Salle__3011.npy", np.full((4, 6), 2.0))
    (tmp_path / "loc").mkdir()
    np.save(tmp_path / "loc" / "7.npy", np.full((1, 5, 5), 3.0))
    assert load_prediction(str(tmp_path), "Salle/3011").mean() == 2.0
    assert load_prediction(str(tmp_path), "loc/7").shape == (5, 5)


def test_missing_and_malformed_predictions_name_the_file(tmp_path):
    with pytest.raises(PredictionError, match="Salle__1.npy"):
        load_prediction(str(tmp_path), "Salle/1")
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 4)))
    with pytest.raises(PredictionError, match=r"a\.npy: expected a 2-D"):
        load_prediction(str(tmp_path), "a")
    (tmp_path / "b.npy").write_bytes(b"not numpy")
    with pytest.raises(PredictionError, match=r"b\.npy: not a readable"):
        load_prediction(str(tmp_path), "b")
    np.save(tmp_path / "c.npy", np.full((3, 3), np.nan))
    with pytest.raises(PredictionError, match=r"c\.npy: 9 NaN of its 9 values"):
        load_prediction(str(tmp_path), "c")
    np.save(tmp_path / "d.npy", np.ones((3, 3), np.complex64))
    with pytest.raises(PredictionError, match=r"d\.npy: expected real numbers, got dtype compl"):
        load_prediction(str(tmp_path), "d")


def test_nan_inf_and_nonpositive_values_name_the_file_and_count(tmp_path):
    """A few bad pixels gave `nan` in the table (bold as best) or, for a disparity <= 0, a 1e6 m
    depth; now the file is named with what is wrong, even with allow_missing."""
    pred = np.full((4, 5), 0.5)
    pred[0, :2] = np.nan
    pred[1, 0] = -np.inf
    pred[2, :2] = 0.0
    pred[3, 0] = -0.25
    pred[3, 1] = 1e39  # beyond float32: inf once cast
    np.save(tmp_path / "loc__7.npy", pred)
    path = str(tmp_path / "loc__7.npy")
    msg = (
        f"{path}: 2 NaN, 2 inf, 3 <= 0 of its 20 values; a depth or disparity prediction "
        "must be finite and > 0 at every pixel"
    )
    with pytest.raises(PredictionError, match=f"^{re.escape(msg)}$"):
        load_prediction(str(tmp_path), "loc/7")
    # A bad file is not a missing one: allow_missing does not skip it.
    missing = []
    with pytest.raises(PredictionError, match=re.escape(path)):
        external_mod.load_batch(str(tmp_path), ["loc/7"], [True], (4, 5), True, missing)
    assert missing == []


def test_diverged_checkpoint_is_named_with_run_dir_and_sample(tmp_path, monkeypatch):
    """evaluate(): a stage-1 model whose M_p is NaN names its run dir and the sample id, where it
    gave NaN in Table 1 and exit 0. Checkpoint and dataset are stubbed (one batch of two)."""

    def nan_at_sample_1(batch):
        out = np.full((2, 4, 6), 2.0, np.float32)
        out[1, 0, 0] = np.nan
        return out

    stub_evaluation(monkeypatch, nan_at_sample_1)
    config = stub_config("runs/diverged")
    with pytest.raises(
        BadInputError,
        match=(
            r"^model 'rgb_echoes' \(runs/diverged\), sample 'loc/2': 1 NaN/inf of its 24 "
            r"predicted depth values;"
        ),
    ):
        evaluate_mod.evaluate(config, str(tmp_path))
    assert not (tmp_path / "tables.json").exists()


def test_depth_panel_png(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 10, (24, 32)).astype(np.float32)
    gt[:4] = 0
    path = figures.depth_panel(
        str(tmp_path / "p.png"),
        "loc/1",
        rng.uniform(size=(24, 32, 3)),
        gt,
        {"No": gt / 3, "RGB": gt * 1.2, "RGB-Echoes": gt},
        max_depth=30.0,
        error_of=("RGB", "RGB-Echoes"),
    )
    img = np.asarray(Image.open(path))
    assert img.shape[1] > img.shape[0] > 100
    # Not a blank canvas: many distinct colours (depth maps and colour bars).
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 200


def test_depth_colour_scale_follows_the_image_not_the_dataset():
    gt = np.zeros((10, 10), np.float32)
    gt[2:] = np.linspace(1.0, 2.0, 80).reshape(8, 10)
    gt[0, 0] = 45.0  # beyond max_depth: ignored
    np.testing.assert_allclose(figures.depth_vmax(gt, 30.0), 1.25 * np.percentile(gt[2:], 99))
    far = np.full((4, 4), 28.0, np.float32)
    assert figures.depth_vmax(far, 30.0) == 30.0  # capped at the dataset's max depth
    assert figures.depth_vmax(np.zeros((4, 4)), 30.0) == 30.0  # nothing valid


def test_resize_host_is_plain_half_pixel_bilinear():
    """cv2.resize's INTER_LINEAR (Monodepth2's evaluation): shrinking samples the map, with no
    low-pass; enlarging agrees with PIL's bilinear; borders clamp."""
    stripes = np.tile(np.float32([1, 0]), (3, 4))  # [3, 8] columns 1, 0, 1, 0, ...
    np.testing.assert_array_equal(external_mod.resize_host(stripes, (3, 4)), np.full((3, 4), 0.5))
    # By hand: output column j samples input x = (j + 0.5) * 4 / 8 - 0.5, clamped to [0, 3].
    ramp = np.float32([[0, 10, 20, 30]])
    np.testing.assert_allclose(
        external_mod.resize_host(ramp, (1, 8)), [[0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30]]
    )
    x = np.random.default_rng(0).random((6, 9)).astype(np.float32)
    pil = np.asarray(Image.fromarray(x).resize((20, 13), Image.BILINEAR), np.float32)
    np.testing.assert_allclose(external_mod.resize_host(x, (13, 20)), pil, atol=1e-5)
