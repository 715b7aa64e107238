"""The canonical camera: focal lengths from stored intrinsics, and M_p × f_test / f_train."""

import json
import math

import batvision_fixture as fx  # tests/ is on sys.path (pytest rootdir-less prepend)
import ml_collections
import numpy as np
import pytest
from eval_stub import stub_config, stub_evaluation

from avs_jax import canonical_camera
from avs_jax.data import input_pipeline as ip
from avs_jax.data.config import default_data_config
from avs_jax.errors import BadInputError, MissingInputError
from avs_jax.evaluation import evaluate as evaluate_mod
from tfds_batvision.build import build_dataset
from tfds_batvision.intrinsics import nominal_intrinsics, relative_focal, resize_intrinsics

HW = (24, 32)
# Two locations, two cameras: focal length 0.5 and 0.625 of the image.
CAMERAS = {
    "A": {"fx": 16.0, "fy": 12.0, "cx": 15.5, "cy": 11.5, "width": 32, "height": 24},
    "B": {"fx": 20.0, "fy": 15.0, "cx": 15.5, "cy": 11.5, "width": 32, "height": 24},
}


def test_relative_focal_hand_values_and_resize_invariance():
    # 90° horizontal field of view: fx = W / 2, so fx / W = 1/2; square pixels with W = 2H give
    # fy / H = 1: sqrt(1/2 * 1).
    k = nominal_intrinsics(128, 64, 90.0)
    assert relative_focal(k, (64, 128)) == pytest.approx(math.sqrt(0.5), rel=1e-6)
    # The same camera at another size (and aspect) compares equal.
    k2 = resize_intrinsics(k, (64, 128), (48, 72))
    assert relative_focal(k2, (48, 72)) == pytest.approx(math.sqrt(0.5), rel=1e-6)
    # BV1's nominal 85° against BV2's 100°: tan 50° / tan 42.5°.
    ratio = relative_focal(nominal_intrinsics(128, 64, 85.0), (64, 128)) / relative_focal(
        nominal_intrinsics(128, 64, 100.0), (64, 128)
    )
    assert ratio == pytest.approx(math.tan(math.radians(50)) / math.tan(math.radians(42.5)))
    assert relative_focal(np.zeros((3, 3)), (64, 128)) == 0.0


@pytest.fixture(scope="module")
def two_camera_dir(tmp_path_factory):
    """root/: a BV2 root of the two cameras; data/: its dataset, built at the native size."""
    d = tmp_path_factory.mktemp("cams")
    for loc, n_train in (("A", 3), ("B", 2)):
        fx.write_bv2(
            d / "root",
            {loc: {"train": n_train, "test": 1}},
            hw=HW,
            frames=1000,
            seed=ord(loc),
            intrinsics=CAMERAS[loc],
        )
    build_dataset("bv2", d / "root", d / "data")
    return d


@pytest.fixture(scope="module")
def two_camera_data(two_camera_dir):
    data = default_data_config("bv2")
    data.data_dir = str(two_camera_dir / "data")
    data.image_size = (16, 32)
    data.num_workers = 0
    data.batch_size = 2
    return data


def test_eval_batches_carry_each_samples_focal_length(two_camera_data):
    from avs_jax.data import datasets

    builder = datasets.open_dataset(two_camera_data)
    (batch,) = list(
        ip.create_eval_iterator(builder, two_camera_data, "test", process_index=0, process_count=1)
    )
    got = {sid.split("/")[0]: float(f) for sid, f in zip(batch["sample_id"], batch["focal"])}
    assert got == pytest.approx({"A": 0.5, "B": 0.625}, rel=1e-6)


def test_a_dataset_stored_at_another_aspect_gives_the_same_focal_lengths(
    two_camera_dir, two_camera_data
):
    """Stored at 16x48 (native 24x32: the aspect changes), K is stored for that size; the focal
    length as a fraction of the image is the camera's all the same, for test and training."""
    from avs_jax.data import datasets

    build_dataset("bv2", two_camera_dir / "root", two_camera_dir / "data", image_size=(16, 48))
    data = ml_collections.ConfigDict(two_camera_data.to_dict())
    data.image_size = data.stored_size = (16, 48)
    builder = datasets.open_dataset(data)
    (batch,) = list(
        ip.create_eval_iterator(builder, data, "test", process_index=0, process_count=1)
    )
    got = {sid.split("/")[0]: float(f) for sid, f in zip(batch["sample_id"], batch["focal"])}
    assert got == pytest.approx({"A": 0.5, "B": 0.625}, rel=1e-6)
    assert canonical_camera.training_focal(data, "runs/x") == pytest.approx(0.5, rel=1e-6)


def test_training_focal_is_the_median_of_the_training_split(two_camera_data, caplog):
    # Train: three examples of camera A (0.5), two of B (0.625).
    assert canonical_camera.training_focal(two_camera_data, "runs/x") == pytest.approx(0.5)
    assert "0.5000-0.6250" in caplog.text  # two cameras: said, not hidden in the median
    gone = ml_collections.ConfigDict(two_camera_data.to_dict())
    gone.data_dir = str(two_camera_data.data_dir) + "_missing"
    with pytest.raises(MissingInputError, match=r"runs/x trained on batvision/bv2 .*train_focal"):
        canonical_camera.training_focal(gone, "runs/x")


def _config(enabled: bool, train_focal: float) -> ml_collections.ConfigDict:
    camera = {"enabled": enabled, "train_focal": train_focal}
    return stub_config("runs/a", canonical_camera=ml_collections.ConfigDict(camera))


def _mp_2m(batch):
    return np.full((2, 4, 6), 2.0, np.float32)


def test_mp_is_scaled_by_the_test_focal_over_training(tmp_path, monkeypatch):
    # Training's focal length 0.4; test cameras 0.5 and 0.6: M_p 2 m -> 2.5 m and 3 m against
    # 3 m of ground truth, Abs Rel 1/6 and 0 (mean 1/12). Off: 2 m, Abs Rel 1/3.
    stub_evaluation(monkeypatch, _mp_2m, focal=np.float32([0.5, 0.6]))
    on = evaluate_mod.evaluate(_config(True, 0.4), str(tmp_path / "on"))
    assert on["table1"]["bv2"]["rgb_echoes"]["abs_rel"] == pytest.approx(1 / 12, rel=1e-5)
    tables = json.loads((tmp_path / "on" / "tables.json").read_text())
    assert tables["canonical_camera"] == {"train_focal": {"rgb_echoes": 0.4}}
    assert "Canonical camera" in (tmp_path / "on" / "tables.md").read_text()
    assert "Canonical camera: M_p" in (tmp_path / "on" / "report.html").read_text()
    off = evaluate_mod.evaluate(_config(False, 0.4), str(tmp_path / "off"))
    assert off["table1"]["bv2"]["rgb_echoes"]["abs_rel"] == pytest.approx(1 / 3, rel=1e-5)
    assert "canonical_camera" not in json.loads((tmp_path / "off" / "tables.json").read_text())
    assert "Canonical camera" not in (tmp_path / "off" / "report.html").read_text()


def test_a_sample_without_intrinsics_is_named(tmp_path, monkeypatch):
    stub_evaluation(monkeypatch, _mp_2m, focal=np.float32([0.5, 0.0]))
    with pytest.raises(BadInputError, match="sample 'loc/2' has no focal length"):
        evaluate_mod.evaluate(_config(True, 0.4), str(tmp_path))
    with pytest.raises(BadInputError, match="train_focal=-1.0 must be > 0"):
        evaluate_mod.evaluate(_config(True, -1.0), str(tmp_path))


def test_a_run_records_its_training_camera_and_reads_it_back(two_camera_data, tmp_path):
    run = tmp_path / "run"
    canonical_camera.record_run_focal(str(run), two_camera_data)
    assert json.loads((run / "camera.json").read_text()) == {"focal": pytest.approx(0.5)}
    # The file, not the data, is what a run's focal length is read from.
    (run / "camera.json").write_text(json.dumps({"focal": 0.7}))
    cfg = ml_collections.ConfigDict({"data": two_camera_data.to_dict()})
    assert canonical_camera.run_focal(str(run), cfg) == pytest.approx(0.7)
    # Each start or resume writes it anew from the data the run trains on now.
    canonical_camera.record_run_focal(str(run), two_camera_data)
    assert canonical_camera.run_focal(str(run), cfg) == pytest.approx(0.5)
    # A run without it (trained before the file existed): its training split.
    assert canonical_camera.run_focal(str(tmp_path / "old"), cfg) == pytest.approx(0.5)
    # Data whose cameras cannot be read (here: not built, and never built for this, even with
    # a BatVision root to build from): the old file goes, training goes on.
    gone = ml_collections.ConfigDict(two_camera_data.to_dict())
    gone.data_dir = str(tmp_path / "unbuilt")
    gone.manual_dir = str(tmp_path / "root_unused")
    canonical_camera.record_run_focal(str(run), gone)
    assert not (run / "camera.json").exists() and not (tmp_path / "unbuilt").exists()
    (run / "camera.json").write_text(json.dumps({"focal": -1}))
    with pytest.raises(BadInputError, match=r"run/camera.json: focal -1.0 must be > 0"):
        canonical_camera.run_focal(str(run), cfg)


def test_an_intrinsics_file_gives_its_cameras_focal_length(tmp_path):
    path = tmp_path / "cam.json"
    path.write_text(json.dumps(CAMERAS["B"]))
    assert canonical_camera.intrinsics_focal(str(path)) == pytest.approx(0.625)
    path.write_text(json.dumps({"fx": 20.0}))
    with pytest.raises(BadInputError, match=r"cam.json: intrinsics lack key\(s\)"):
        canonical_camera.intrinsics_focal(str(path))
    with pytest.raises(MissingInputError, match="no such intrinsics file"):
        canonical_camera.intrinsics_focal(str(tmp_path / "none.json"))
    for bad in (0, -24, 12.5, "1280px", True):
        path.write_text(json.dumps({**CAMERAS["B"], "width": bad}))
        with pytest.raises(
            BadInputError, match=r"cam.json: intrinsics width must be a positive whole number"
        ):
            canonical_camera.intrinsics_focal(str(path))
    path.write_text(json.dumps([CAMERAS["B"]]))
    with pytest.raises(BadInputError, match=r"cam.json: intrinsics must be a JSON object"):
        canonical_camera.intrinsics_focal(str(path))


def test_the_same_camera_gives_a_factor_of_exactly_one_and_image_free_models_none():
    # The batches carry f_test in float32, training's is a float: the ratio is taken in float32.
    for hfov in (85.0, 100.0):
        f = relative_focal(nominal_intrinsics(128, 64, hfov), (64, 128))
        got = canonical_camera.factors(np.float32([f, 0.0]), f, np.array([True, False]), ["a", ""])
        assert got.tolist() == [1.0, 1.0]  # the padding row: 1
    # The echo-only model reads no image: its depth does not follow the camera.
    config = ml_collections.ConfigDict(
        {
            "stage1": {"echoes": "runs/e", "rgb": "runs/r"},
            "canonical_camera": {"enabled": True, "train_focal": 0.4},
        }
    )
    loaded = {"echoes": (None, None, None), "rgb": (None, None, None)}
    assert canonical_camera.train_focals(config, loaded) == {"rgb": 0.4}
