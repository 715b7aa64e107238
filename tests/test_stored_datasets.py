"""Datasets stored for training (issue 34): images at a training size, BV1 frames stored once.

A training-size config (bv2_32x64, ...) must give the pipeline exactly what decoding the
full-resolution dataset gives; triples stored as frame indices exactly what three stored images
per triple gave.
"""

import json
import shutil
from pathlib import Path

import batvision_fixture as fx  # tests/ is on sys.path (pyproject's pythonpath)
import ml_collections
import numpy as np
import pytest

from avs_jax.data import datasets, transforms
from avs_jax.data import input_pipeline as ip
from avs_jax.data.config import default_data_config
from avs_jax.errors import BadInputError
from tfds_batvision import batvision, csv_index, stored, validate
from tfds_batvision.build import build_dataset
from tfds_batvision.intrinsics import resize_intrinsics

SIZE = (32, 64)  # the real 720x1280 JPEG decodes at 1/8 scale (90x160), then bilinear
REAL = fx.REAL_BV2_ROOT / "unknown_location"
K_BV1 = {"fx": 40.0, "fy": 41.0, "cx": 39.5, "cy": 23.5, "width": 80, "height": 48}


def _cfg(name, data_dir, **kw) -> ml_collections.ConfigDict:
    c = default_data_config(name)
    c.data_dir = str(data_dir)
    c.image_size = SIZE
    c.num_workers, c.num_threads, c.prefetch_buffer_size = 0, 1, 1
    c.batch_size, c.shuffle, c.augment = 1, False, False
    for k, v in kw.items():
        c[k] = v
    return c


def _by_id(source) -> dict:
    return {source[i]["sample_id"].decode(): source[i] for i in range(len(source))}


def _assert_batches_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)
            assert np.asarray(x[k]).dtype == np.asarray(y[k]).dtype, k


@pytest.fixture(scope="module")
def bv2(tmp_path_factory):
    """A BV2 root (random 48x80 JPEGs and two copies of the real sample) built at full
    resolution and at SIZE, in one data dir."""
    d = tmp_path_factory.mktemp("bv2")
    root = fx.write_bv2(d / "root", {"L": {"train": 3, "val": 1, "test": 2}}, hw=(48, 80))
    for i in (0, 4):  # one train and one test sample: the real 1280x720 JPEG, depth and WAV
        shutil.copy(REAL / "camera/camera_47.jpeg", root / f"L/camera/camera_{i}.jpeg")
        shutil.copy(REAL / "depth/depth_47.npy", root / f"L/depth/depth_{i}.npy")
        shutil.copy(REAL / "audio/audio_47.wav", root / f"L/audio/audio_{i}.wav")
    full = build_dataset("bv2", root, d / "data")
    small = build_dataset("bv2", root, d / "data", image_size=SIZE)
    return root, d / "data", full, small


def test_stored_size_round_trip(bv2):
    _, _, full, small = bv2
    assert small.builder_config.name == "bv2_32x64" and small.builder_config.image_size == SIZE
    for split in ("train", "val", "test"):
        want, got = _by_id(full.as_data_source(split)), _by_id(small.as_data_source(split))
        assert set(got) == set(want)
        for sid, ex in got.items():
            pixels, native = transforms.decode_image_uint8(want[sid]["image"], SIZE)
            assert ex["image"].dtype == np.uint8 and ex["image"].shape == (*SIZE, 3)
            np.testing.assert_array_equal(ex["image"], pixels)  # what the pipeline decodes
            np.testing.assert_array_equal(
                ex["depth"], transforms.resize_nearest(want[sid]["depth"], SIZE)
            )
            np.testing.assert_array_equal(
                ex["intrinsics"], resize_intrinsics(want[sid]["intrinsics"], native, SIZE)
            )
            np.testing.assert_array_equal(ex["audio"], want[sid]["audio"])
            assert ex["audio_onset"] == want[sid]["audio_onset"]
            if split == "train":  # training reads only the stored size
                assert ex["depth_full"].shape == (0, 0)
            else:  # evaluation's ground truth at the native size
                np.testing.assert_array_equal(ex["depth_full"], want[sid]["depth"])
    assert full.as_data_source("test")[0]["depth"].shape in {(48, 80), (720, 1280)}


def _options(path) -> list[str]:
    from array_record.python import array_record_module

    reader = array_record_module.ArrayRecordReader(str(path))
    try:
        return reader.writer_options_string().split(",")
    finally:
        reader.close()


def test_training_size_files_are_uncompressed_and_full_size_ones_not(bv2):
    # (The round trip above reads the rewritten files: the same records.)
    _, _, full, small = bv2
    sized = sorted(Path(small.data_dir).glob("*.array_record-*"))
    assert sized and all("uncompressed" in _options(p) for p in sized)
    assert stored.store_uncompressed(small.data_dir) == []  # done once
    encoded = sorted(Path(full.data_dir).glob("*.array_record-*"))
    assert encoded and not any("uncompressed" in _options(p) for p in encoded)


def test_store_uncompressed_keeps_every_record_in_order(tmp_path):
    from array_record.python import array_record_module

    records = [bytes([i]) * (i * 37 + 1) for i in range(20)]
    path = tmp_path / "x.array_record-00000-of-00001"
    writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")  # TFDS's (zstd)
    for r in records:
        writer.write(r)
    writer.close()
    assert "uncompressed" not in _options(path)
    assert stored.store_uncompressed(tmp_path) == [path]
    assert "uncompressed" in _options(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    reader = array_record_module.ArrayRecordReader(str(path))
    assert [reader.read([i])[0] for i in range(reader.num_records())] == records
    reader.close()


def test_stored_size_batches_are_bit_identical(bv2):
    _, data_dir, full, small = bv2
    kw = dict(process_index=0, process_count=1)
    n = batvision.split_size(full, "train")
    for device_prep in (True, False):  # train batches for the device, and made on the host
        cfg = _cfg("bv2", data_dir, device_prep=device_prep)
        cfg_small = _cfg("bv2", data_dir, device_prep=device_prep, stored_size=SIZE)
        it_full = ip.create_train_iterator(full, cfg, **kw)
        it_small = ip.create_train_iterator(small, cfg_small, **kw)
        _assert_batches_equal([next(it_full) for _ in range(n)], [next(it_small) for _ in range(n)])
    for split in ("val", "test"):  # evaluation: the same depth_full, at the native size
        _assert_batches_equal(
            list(ip.create_eval_iterator(full, cfg, split, **kw)),
            list(ip.create_eval_iterator(small, cfg_small, split, **kw)),
        )
    native = {
        b["depth_full"].shape[1:] for b in ip.create_eval_iterator(small, cfg_small, "test", **kw)
    }
    assert native == {(48, 80), (720, 1280)}


def test_stored_size_mismatch_error(bv2):
    _, data_dir, _, small = bv2
    ex = small.as_data_source("train")[0]
    with pytest.raises(
        BadInputError,
        match=r"stores images at 32x64 but .* is 64x128.*--image_size=64,128.*stored_size=\(\)",
    ):
        transforms.decode_image(ex["image"], (64, 128))
    cfg = _cfg("bv2", data_dir, image_size=(64, 128), augment=False)
    it = ip.create_train_iterator(small, cfg, process_index=0, process_count=1)
    with pytest.raises(
        BadInputError, match="stores images at 32x64 but config.data.image_size is 64x128"
    ):
        next(it)
    cfg.stored_size = SIZE
    with pytest.raises(
        BadInputError, match=r"stored_size=\(32, 64\) but config.data.image_size=\(64, 128\)"
    ):
        datasets.open_dataset(cfg)
    # Only val/test keep the native depth that evaluation scores against.
    cfg = _cfg("bv2", data_dir, stored_size=SIZE)
    with pytest.raises(
        BadInputError, match="split 'train' of a training-size dataset keeps no full"
    ):
        next(iter(ip.create_eval_iterator(small, cfg, "train", process_index=0, process_count=1)))


def test_dataset_versions_coexist(bv2):
    root, data_dir, full, small = bv2
    configs = sorted(p.name for p in (data_dir / "batvision").iterdir() if p.name[0] != ".")
    assert configs == ["bv2", "bv2_32x64"]
    assert full.version == small.version == batvision.Batvision.VERSION == "1.2.0"
    # Opened from the config alone (manual_dir empty: nothing is rebuilt).
    got_full = datasets.open_dataset(_cfg("bv2", data_dir))
    got_small = datasets.open_dataset(_cfg("bv2", data_dir, stored_size=SIZE))
    assert (got_full.builder_config.name, got_small.builder_config.name) == ("bv2", "bv2_32x64")
    assert isinstance(got_full.as_data_source("train")[0]["image"], bytes)
    assert got_small.as_data_source("train")[0]["image"].shape == (*SIZE, 3)
    missing = _cfg("bv2", data_dir, image_size=(16, 32), stored_size=(16, 32))
    (data_dir / "batvision/bv2_16x32/1.1.0").mkdir(parents=True)  # an older builder's
    with pytest.raises(
        datasets.DatasetNotFoundError,
        match=r"bv2_16x32 is not built in .* \(only version 1.1.0: rebuild it\) .*"
        "--config=bv2 --image_size=16,32",
    ):
        datasets.open_dataset(missing)
    missing.manual_dir = str(root)  # with a root, open_dataset builds the missing size
    assert datasets.open_dataset(missing).as_data_source("test")[0]["image"].shape == (16, 32, 3)
    assert stored.parse_config_name("bv1_triples_192x640") == ("bv1_triples", (192, 640))
    with pytest.raises(ValueError, match="unknown BatVision config 'bv3_1x2'"):
        stored.parse_config_name("bv3_1x2")


# ---- frames stored once -------------------------------------------------------------------------

A = [1000 + 0.1 * i for i in range(81)]  # centres 20..60 use frames 0..80, most of them thrice
B = [2000 + 0.1 * i for i in range(41)]  # one triple: frames 0, 20, 40


@pytest.fixture(scope="module")
def bv1(tmp_path_factory):
    d = tmp_path_factory.mktemp("bv1")
    root = fx.write_bv1(
        d / "root", {"s1": A, "s2": B}, hw=(48, 80), samples=256, poses=True, intrinsics=K_BV1
    )
    return root, d / "data"


def _old_triples(root) -> dict[str, dict]:
    """The records bv1_triples 1.1.0 stored: three encoded images, K, three poses per triple."""
    rows = csv_index.list_bv1(str(root), "train", need_time=True)
    out = {}
    for t in csv_index.make_triples(rows, 20, 3.0):
        images, hws = zip(*(validate.read_image_bytes(r.camera) for r in t))
        poses = json.loads((root / t[1].group / "poses.json").read_text())
        k = np.array([[40, 0, 39.5], [0, 41, 23.5], [0, 0, 1]], np.float32)  # K_BV1, native
        out[t[1].sample_id] = {
            "sample_id": t[1].sample_id.encode(),
            "images": np.array(images, dtype=object),
            "intrinsics": k,
            "poses": np.array([poses[r.stem] for r in t], np.float32),
            "has_pose": np.bool_(True),
        }
        assert hws[0] == (48, 80)
    return out


def test_frames_stored_once(bv1):
    root, data_dir = bv1
    for b in (
        build_dataset("bv1_triples", root, data_dir),
        build_dataset("bv1_triples", root, data_dir, image_size=SIZE),
    ):
        assert dict((k, v.num_examples) for k, v in b.info.splits.items()) == {
            "train": 41 + 1,
            "train_frames": 81 + 3,  # each frame a triple uses, once (not 42 x 3 = 126 images)
        }
        frames = b.as_data_source("train_frames")
        ids = [frames[i]["sample_id"].decode() for i in range(len(frames))]
        assert len(set(ids)) == len(ids)
        want = [f"s1/{fx.bv1_stem(t)}" for t in A] + [
            f"s2/{fx.bv1_stem(B[i])}" for i in (0, 20, 40)
        ]
        assert ids == want  # in (session, time) order: the triples' indices point here
        src = b.as_data_source("train")
        assert isinstance(src, stored.TripleSource) and len(src) == 42
        assert src.triples[0]["frames"].tolist() == [0, 20, 40]
        assert src.triples[20]["frames"].tolist() == [20, 40, 60]  # frames shared with [0]
        assert src.triples[41]["frames"].tolist() == [81, 82, 83]  # s2's triple


def test_triples_by_index_equal_the_old_triples(bv1):
    root, data_dir = bv1
    old = _old_triples(root)
    new = build_dataset("bv1_triples", root, data_dir)
    got = _by_id(new.as_data_source("train"))
    assert set(got) == set(old)
    for sid, ex in got.items():
        assert tuple(ex["images"]) == tuple(old[sid]["images"])
        np.testing.assert_array_equal(ex["intrinsics"], old[sid]["intrinsics"])
        np.testing.assert_array_equal(ex["poses"], old[sid]["poses"])
        assert bool(ex["has_pose"])
    # Batches: the old records decoded vs the stored frames, at full resolution and stored size.
    cfg = _cfg("bv1_triples", data_dir)
    want = {sid: transforms.DecodeTriple(SIZE, eval_mode=True).map(ex) for sid, ex in old.items()}
    small = build_dataset("bv1_triples", root, data_dir, image_size=SIZE)
    for builder, c in ((new, cfg), (small, _cfg("bv1_triples", data_dir, stored_size=SIZE))):
        batches = list(
            ip.create_eval_iterator(builder, c, "train", process_index=0, process_count=1)
        )
        assert len(batches) == len(old)
        for b in batches:
            w = want[b["sample_id"][0]]
            for k in ("frames", "frames_aug", "intrinsics", "poses", "has_pose"):
                np.testing.assert_array_equal(b[k][0], w[k], err_msg=k)
                assert b[k].dtype == np.asarray(w[k]).dtype
        train = next(ip.create_train_iterator(builder, c, process_index=0, process_count=1))
        assert train["frames"].shape == (1, 3, *SIZE, 3)


def test_a_bad_frame_is_skipped_once_and_its_triples_left_out(bv1, tmp_path):
    root = shutil.copytree(bv1[0], tmp_path / "root")
    bad = root / "s1/camera/left" / f"{fx.bv1_stem(A[40])}.jpeg"  # in the triples of 20, 40, 60
    bad.write_bytes(bad.read_bytes()[:100])
    old = _old_triples(bv1[0])
    b = build_dataset("bv1_triples", root, tmp_path / "data", skip_bad=True, image_size=SIZE)
    assert [p for p, _ in b.skipped] == [str(bad)]
    assert batvision.split_size(b, "train") == 42 - 3
    assert len(b.as_data_source("train_frames")) == 84 - 1
    left_out = {f"s1/{fx.bv1_stem(A[i])}" for i in (20, 40, 60)}
    got = _by_id(b.as_data_source("train"))
    assert set(got) == set(old) - left_out
    for sid, ex in got.items():  # the indices past the skipped frame still find their frames
        want = [transforms.decode_image_uint8(x, SIZE)[0] for x in old[sid]["images"]]
        np.testing.assert_array_equal(ex["images"], np.stack(want))
        np.testing.assert_array_equal(ex["poses"], old[sid]["poses"])
