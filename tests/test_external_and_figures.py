"""External predictions: found by sample id, bad files named; figures are written."""

import numpy as np
import pytest
from PIL import Image

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
    with pytest.raises(PredictionError, match=r"c\.npy: holds no finite"):
        load_prediction(str(tmp_path), "c")


def test_depth_panel_png(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 10, (24, 32)).astype(np.float32)
    gt[:4] = 0
    path = figures.depth_panel(str(tmp_path / "p.png"), "loc/1", rng.uniform(size=(24, 32, 3)),
                               gt, {"No": gt / 3, "RGB": gt * 1.2, "RGB-Echoes": gt},
                               max_depth=30.0, error_of=("RGB", "RGB-Echoes"))
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
