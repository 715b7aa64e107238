"""Tests of the TF-free BatVision TFDS builder: real BV2 sample, fixtures, triples, bad input."""

import csv
import io
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import batvision_fixture as fx  # tests/ is on sys.path (pytest rootdir-less prepend)
import numpy as np
import PIL.Image
import pytest
import soundfile as sf

from tfds_batvision import batvision, csv_index
from tfds_batvision.build import build_dataset

REPO = Path(__file__).resolve().parents[1]
SAMPLE = fx.REAL_BV2_ROOT
K_JSON = {"fx": 30.0, "fy": 31.0, "cx": 15.5, "cy": 11.5, "width": 32, "height": 24}


def _by_id(builder, split):
    ds = builder.as_data_source(split)
    return {ds[i]["sample_id"].decode(): ds[i] for i in range(len(ds))}


def test_real_bv2_sample_builds_unchanged(tmp_path):
    b = build_dataset("bv2", SAMPLE, tmp_path / "data")
    assert set(b.info.splits) == {"test"}  # empty train/val CSVs -> absent splits of 0 examples
    assert [batvision.split_size(b, s) for s in ("train", "val", "test")] == [0, 0, 1]
    ex = _by_id(b, "test")["unknown_location/47"]
    loc = SAMPLE / "unknown_location"
    raw_depth = np.load(loc / "depth" / "depth_47.npy")
    assert raw_depth.dtype == np.uint16
    np.testing.assert_array_equal(ex["depth"], raw_depth.astype(np.float32) / 1000.0)
    assert np.all(ex["depth"][raw_depth == 0] == 0) and (raw_depth == 0).mean() > 0.1
    pcm, sr = sf.read(loc / "audio" / "audio_47.wav", dtype="int32")
    assert sr == 44100 and pcm.shape == (20000, 2)
    # Exact even in float32: the recording's int32 samples carry 24 significant bits.
    np.testing.assert_array_equal(ex["audio"], pcm.T.astype(np.float64) / 2**31)
    assert ex["image"] == (loc / "camera" / "camera_47.jpeg").read_bytes()
    decoded = np.asarray(PIL.Image.open(io.BytesIO(ex["image"])).convert("RGB"))
    assert decoded.shape == (720, 1280, 3)
    # No intrinsics.json beside the sample: the documented nominal pinhole.
    f = 640.0 / math.tan(math.radians(batvision.NOMINAL_HFOV_DEG["bv2"]) / 2)
    np.testing.assert_allclose(
        ex["intrinsics"], [[f, 0, 639.5], [0, f, 359.5], [0, 0, 1]], rtol=1e-6
    )


def test_bv2_fixture_round_trip_with_stray_entries(tmp_path, caplog):
    root = fx.write_bv2(
        tmp_path / "bv2",
        {"LocA": {"train": 2, "val": 1, "test": 1}, "LocB": {"train": 1, "test": 1}},
        intrinsics=K_JSON,
    )
    (root / "README.txt").write_text("stray file")
    (root / "notes").mkdir()
    (root / ".complete").write_text("{}")  # the simulator's marker: skipped without a warning
    (root / ".cache").mkdir()
    with caplog.at_level(logging.WARNING):
        b = build_dataset("bv2", root, tmp_path / "data")
    skipped = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
    assert len(skipped) == 2
    assert any("README.txt" in m for m in skipped) and any("notes" in m for m in skipped)
    assert [batvision.split_size(b, s) for s in ("train", "val", "test")] == [3, 1, 2]
    train = _by_id(b, "train")
    assert set(train) == {"LocA/0", "LocA/1", "LocB/4"}
    ex = train["LocB/4"]
    np.testing.assert_array_equal(
        ex["depth"], np.load(root / "LocB/depth/depth_4.npy").astype(np.float32) / 1000
    )
    pcm, _ = sf.read(root / "LocB/audio/audio_4.wav", dtype="int32")
    # float32 keeps 24 significant bits: random full-range int32 rounds once, like the contract says.
    np.testing.assert_array_equal(ex["audio"], (pcm.T / 2**31).astype(np.float32))
    np.testing.assert_allclose(ex["intrinsics"], [[30, 0, 15.5], [0, 31, 11.5], [0, 0, 1]])


def test_bv1_fixture_depth_invalid_to_zero_and_ears(tmp_path):
    root = fx.write_bv1(
        tmp_path / "bv1",
        {"2019.08.26": [100.0, 100.1, 100.2]},
        split_of=lambda s, j: ["train", "val", "test"][j],
    )
    b = build_dataset("bv1", root, tmp_path / "data")
    stem = fx.bv1_stem(100.2)
    ex = _by_id(b, "test")[f"2019.08.26/{stem}"]
    raw = np.load(root / "2019.08.26/depth" / f"{stem}.npy")
    want = raw / 1000.0
    want[~np.isfinite(want) | (want < 0)] = 0
    np.testing.assert_allclose(ex["depth"], want, rtol=1e-6)
    assert ex["depth"][0, :3].tolist() == [0, 0, 0]
    left = np.load(root / "2019.08.26/audio/raw_long" / f"{stem}_left.npy")
    right = np.load(root / "2019.08.26/audio/raw_long" / f"{stem}_right.npy")
    np.testing.assert_array_equal(ex["audio"], np.stack([left, right]))


def test_triples_respect_scene_changes_and_offsets(tmp_path):
    dt = 0.1
    a = [1000 + dt * i for i in range(45)] + [2000 + dt * i for i in range(42)]  # time jump
    bsess = [3000 + dt * i for i in range(41)]
    root = fx.write_bv1(
        tmp_path / "bv1", {"2019.08.26": a, "2019.08.27": bsess}, hw=(8, 12), samples=16, poses=True
    )
    b = build_dataset("bv1_triples", root, tmp_path / "data")
    got = _by_id(b, "train")
    # 45 frames -> centres 20..24, 42 frames -> 20..21, 41 frames -> 20: never across the jump or
    # the session change.
    want_centres = [a[i] for i in range(20, 25)] + [a[45 + i] for i in range(20, 22)] + [bsess[20]]
    assert len(got) == len(want_centres)
    for t in want_centres:
        ex = got[("2019.08.26/" if t < 3000 else "2019.08.27/") + fx.bv1_stem(t)]
        assert bool(ex["has_pose"])
        # poses.json stores x = frame time: t-20 and t+20 frames are exactly 20 steps away.
        np.testing.assert_allclose(ex["poses"][:, 0, 3], [t - 20 * dt, t, t + 20 * dt], atol=1e-3)
        sess = "2019.08.26" if t < 3000 else "2019.08.27"
        for k, tt in enumerate((t - 20 * dt, t, t + 20 * dt)):
            f = root / sess / "camera/left" / f"{fx.bv1_stem(round(tt, 6))}.jpeg"
            assert ex["images"][k] == f.read_bytes()


def test_triples_take_the_session_from_the_audio_path(tmp_path):
    """Camera files in one folder for all sessions (a layout no public source rules out): the
    session and the frame's time come from the audio path, whose layout is documented, so two
    recording days at the same hours still make no triple across them."""
    import shutil

    day1 = [1000 + 0.1 * i for i in range(41)]
    day2 = [t + 0.05 for t in day1]  # the same hours, another day
    root = fx.write_bv1(tmp_path / "bv1", {"2019.08.26": day1, "2019.08.27": day2}, hw=(8, 12))
    (root / "camera_left").mkdir()
    with open(root / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        sess, _, _, name = r["camera path left"].split("/")
        flat = f"camera_left/{sess}_{name}"
        shutil.move(root / r["camera path left"], root / flat)
        fx.rewrite_csv_cell(root / "train.csv", i, "camera path left", flat)
    b = build_dataset("bv1_triples", root, tmp_path / "data")
    got = _by_id(b, "train")
    assert sorted(got) == [
        f"2019.08.26/{fx.bv1_stem(day1[20])}",
        f"2019.08.27/{fx.bv1_stem(day2[20])}",
    ]
    for sid, ex in got.items():
        sess, stem = sid.split("/")
        times = day1 if sess == "2019.08.26" else day2
        for k, tt in enumerate(times[0:41:20]):
            f = root / "camera_left" / f"{sess}_{fx.bv1_stem(round(tt, 6))}.jpeg"
            assert ex["images"][k] == f.read_bytes(), (sid, k)


def test_a_root_too_short_for_any_triple_says_why(tmp_path):
    """Rows in the CSV but no 41 consecutive frames of one scene: the error says how many frames
    and segments there are and what a triple needs (it used to say the CSVs had no example)."""
    times = [1000 + 0.1 * i for i in range(30)] + [2000 + 0.1 * i for i in range(30)]  # a jump
    root = fx.write_bv1(tmp_path / "bv1", {"2019.08.26": times}, hw=(8, 12), samples=16)
    with pytest.raises(
        csv_index.BadFileError,
        match=r"no frame triple in any split; train: 60 frame\(s\) in 2 scene segment\(s\), the "
        r"longest 30 frames; a triple needs 41 consecutive frames",
    ):
        build_dataset("bv1_triples", root, tmp_path / "data")


def test_scene_segments_break_on_index_and_backward_time():
    rows = [
        csv_index.Row(sample_id=str(i), csv_path="", line=i, group="s", camera="", time=t, index=k)
        for i, (t, k) in enumerate([(0, 0), (1, 1), (2, 2), (3, 9), (4, 10), (3.5, 11), (4.5, 12)])
    ]
    segs = csv_index.scene_segments(rows, gap_factor=3.0)
    assert [[r.sample_id for r in s] for s in segs] == [["0", "1", "2"], ["3", "4"], ["5", "6"]]


def test_triples_without_poses_are_identity(tmp_path):
    root = fx.write_bv1(
        tmp_path / "bv1",
        {"s1": [10 + 0.1 * i for i in range(41)]},
        hw=(8, 12),
        samples=16,
        intrinsics=dict(K_JSON, width=12, height=8),
    )
    b = build_dataset("bv1_triples", root, tmp_path / "data")
    (ex,) = _by_id(b, "train").values()
    assert not bool(ex["has_pose"])
    np.testing.assert_array_equal(ex["poses"], np.tile(np.eye(4), (3, 1, 1)))
    np.testing.assert_allclose(ex["intrinsics"], [[30, 0, 15.5], [0, 31, 11.5], [0, 0, 1]])


# ---- bad input -------------------------------------------------------------------------------


def _truncate(p: Path, keep: float = 0.5):
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])


def _wav(p: Path, **kw):
    args = dict(sr=44100, ch=2, subtype="PCM_32")
    args.update(kw)
    data = np.zeros((100, args["ch"]), np.int32)
    sf.write(p, data, args["sr"], subtype=args["subtype"])


BV2_CASES = {
    "missing_jpeg": (lambda r: os.remove(r / "L/camera/camera_1.jpeg"), "L/camera/camera_1.jpeg"),
    "csv_points_at_missing": (
        lambda r: fx.rewrite_csv_cell(r / "L/test.csv", 1, "audio file name", "nope.wav"),
        "L/audio/nope.wav",
    ),
    "empty_wav": (lambda r: (r / "L/audio/audio_1.wav").write_bytes(b""), "L/audio/audio_1.wav"),
    "truncated_wav": (lambda r: _truncate(r / "L/audio/audio_1.wav"), "L/audio/audio_1.wav"),
    "wav_rate": (lambda r: _wav(r / "L/audio/audio_1.wav", sr=48000), "L/audio/audio_1.wav"),
    "wav_channels": (lambda r: _wav(r / "L/audio/audio_1.wav", ch=1), "L/audio/audio_1.wav"),
    "wav_dtype": (
        lambda r: _wav(r / "L/audio/audio_1.wav", subtype="PCM_16"),
        "L/audio/audio_1.wav",
    ),
    "empty_npy": (lambda r: (r / "L/depth/depth_1.npy").write_bytes(b""), "L/depth/depth_1.npy"),
    "truncated_npy": (lambda r: _truncate(r / "L/depth/depth_1.npy"), "L/depth/depth_1.npy"),
    "depth_dtype": (
        lambda r: np.save(r / "L/depth/depth_1.npy", np.ones((24, 32), np.float32)),
        "L/depth/depth_1.npy",
    ),
    "depth_not_2d": (  # a depth map of another 2-D size is resized (test_builder_tolerance.py)
        lambda r: np.save(r / "L/depth/depth_1.npy", np.ones((24, 32, 2), np.uint16)),
        "L/depth/depth_1.npy",
    ),
    "empty_jpeg": (
        lambda r: (r / "L/camera/camera_1.jpeg").write_bytes(b""),
        "L/camera/camera_1.jpeg",
    ),
    "truncated_jpeg": (lambda r: _truncate(r / "L/camera/camera_1.jpeg"), "L/camera/camera_1.jpeg"),
}


@pytest.mark.parametrize("case", sorted(BV2_CASES))
def test_bv2_bad_input_named_then_skipped_then_clean_rebuild(tmp_path, case):
    corrupt, rel = BV2_CASES[case]
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 2}}, frames=64)
    corrupt(root)
    data = tmp_path / "data"
    with pytest.raises(Exception) as err:
        build_dataset("bv2", root, data)
    assert str(root / rel) in str(err.value), str(err.value)
    # Nothing half-written is taken as complete; no incomplete.* folder is left behind.
    fresh = batvision.Batvision(config="bv2", data_dir=str(data), file_format="array_record")
    assert not fresh.is_prepared()
    assert not list(data.glob("batvision/bv2/*"))
    b = build_dataset("bv2", root, data, skip_bad=True)
    assert batvision.split_size(b, "test") == 1
    assert [p for p, _ in b.skipped] == [str(root / rel)]
    assert set(_by_id(b, "test")) == {"L/0"}


def test_rebuild_after_failure_starts_clean(tmp_path):
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"train": 2, "test": 2}}, frames=64)
    good = (root / "L/camera/camera_3.jpeg").read_bytes()
    (root / "L/camera/camera_3.jpeg").write_bytes(b"")  # fails in the test split, after train
    with pytest.raises(Exception, match="camera_3.jpeg"):
        build_dataset("bv2", root, tmp_path / "data")
    (root / "L/camera/camera_3.jpeg").write_bytes(good)
    b = build_dataset("bv2", root, tmp_path / "data")
    assert [batvision.split_size(b, s) for s in ("train", "test")] == [2, 2]


def test_bv2_csv_missing_column(tmp_path):
    root = fx.write_bv2(tmp_path / "bv2", {"A": {"test": 1}, "B": {"test": 1}}, frames=64)
    fx.drop_csv_column(root / "A/test.csv", "depth path")
    with pytest.raises(Exception) as err:
        build_dataset("bv2", root, tmp_path / "data")
    assert str(root / "A/test.csv") in str(err.value) and "depth path" in str(err.value)
    b = build_dataset("bv2", root, tmp_path / "data", skip_bad=True)
    assert set(_by_id(b, "test")) == {"B/1"}
    assert b.skipped[0][0] == str(root / "A/test.csv")


BV1_CASES = {
    "audio_complex_dtype": lambda p: np.save(p, np.ones(16, np.complex64)),
    "audio_two_channels": lambda p: np.save(p, np.ones((2, 16), np.float32)),
    "audio_empty": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("case", sorted(BV1_CASES))
def test_bv1_bad_ear_file(tmp_path, case):
    root = fx.write_bv1(
        tmp_path / "bv1", {"s": [1.0, 1.1]}, split_of=lambda s, j: "test", hw=(8, 12), samples=16
    )
    bad = root / "s/audio/raw_long" / f"{fx.bv1_stem(1.1)}_right.npy"
    BV1_CASES[case](bad)
    with pytest.raises(Exception) as err:
        build_dataset("bv1", root, tmp_path / "data")
    assert str(bad) in str(err.value)
    b = build_dataset("bv1", root, tmp_path / "data", skip_bad=True)
    assert batvision.split_size(b, "test") == 1 and b.skipped[0][0] == str(bad)


def test_bv1_stray_entries_ignored_and_all_bad_split_reported(tmp_path):
    root = fx.write_bv1(
        tmp_path / "bv1",
        {"s": [1.0, 1.1]},
        split_of=lambda s, j: ["train", "test"][j],
        hw=(8, 12),
        samples=16,
    )
    (root / "stray.txt").write_text("x")
    (root / "stray_dir").mkdir()
    b = build_dataset("bv1", root, tmp_path / "data")
    assert [batvision.split_size(b, s) for s in ("train", "val", "test")] == [1, 0, 1]
    bad = root / "s/depth" / f"{fx.bv1_stem(1.1)}.npy"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="no valid samples left") as err:
        build_dataset("bv1", root, tmp_path / "data2", skip_bad=True)
    assert str(bad) in str(err.value)


def test_bv1_csv_missing_column(tmp_path):
    root = fx.write_bv1(tmp_path / "bv1", {"s": [1.0]}, hw=(8, 12), samples=16)
    fx.drop_csv_column(root / "train.csv", "audio path right")
    with pytest.raises(Exception) as err:
        build_dataset("bv1", root, tmp_path / "data")
    assert str(root / "train.csv") in str(err.value) and "audio path right" in str(err.value)


def test_build_command_skip_bad_reports(tmp_path):
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 2}}, frames=64)
    (root / "L/depth/depth_1.npy").write_bytes(b"")
    cmd = [
        sys.executable,
        "-m",
        "tfds_batvision.build",
        "--config=bv2",
        f"--manual_dir={root}",
        f"--data_dir={tmp_path / 'data'}",
        "--skip_bad",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "Skipped 1 bad sample(s)" in out and str(root / "L/depth/depth_1.npy") in out


def test_no_tensorflow_or_torch_imported(tmp_path):
    code = f"""
import sys
from tfds_batvision.build import build_dataset
from avs_jax.data import input_pipeline
from avs_jax.data.config import default_data_config
b = build_dataset("bv2", {str(SAMPLE)!r}, {str(tmp_path / "data")!r})
ex = b.as_data_source("test")[0]
cfg = default_data_config("bv2")
cfg.image_size = (16, 32)
batch = next(iter(input_pipeline.create_eval_iterator(b, cfg, "test", batch_size=1)))
assert float(batch["depth"].max()) > 0
cfg.num_workers = 0
cfg.batch_size = 1
train = next(input_pipeline.create_train_iterator(b, cfg, "test", process_index=0,
                                                  process_count=1))
assert float(abs(train["wave"]).max()) > 0
bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "torch")]
print("IMPORTED", bad)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "IMPORTED []" in out.stdout


@pytest.mark.parametrize("case", ["empty_file", "missing_root", "non_utf8_csv_skip_bad"])
def test_build_command_names_a_bad_file_in_one_line(tmp_path, case):
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 2}}, frames=64)
    bad = root / "L/depth/depth_1.npy"
    bad.write_bytes(b"")
    manual = root if case != "missing_root" else tmp_path / "not_there"
    cmd = [
        sys.executable,
        "-m",
        "tfds_batvision.build",
        "--config=bv2",
        f"--manual_dir={manual}",
        f"--data_dir={tmp_path / 'data'}",
    ]
    if case == "non_utf8_csv_skip_bad":
        (root / "L/test.csv").write_bytes(
            (root / "L/test.csv").read_bytes() + "é\n".encode("latin-1")
        )
        cmd.append("--skip_bad")
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    expected = {
        "empty_file": f"{bad}: file is empty (0 bytes)",
        "missing_root": f"{manual}: does not exist or is empty",
        "non_utf8_csv_skip_bad": f"{root / 'L/test.csv'}: not UTF-8 text: byte 0xe9 at "
        "line 4, byte 1 of the line",
    }[case]
    assert last.startswith("tfds_batvision.build: bad BatVision input: " + expected), last
    assert not (tmp_path / "data/batvision/bv2/1.0.0").exists()  # nothing left to be read


# ---- bad split CSVs: encoding, repeated rows ----------------------------------------------------

NOT_SKIPPED = "a split CSV is the index of its samples, so --skip_bad does not skip it"


def _csv_root(tmp_path, layout: str) -> tuple[Path, Path]:
    """A tiny BV1 or BV2 root with two test samples, and the test split's CSV."""
    if layout == "bv2":
        root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 2}}, frames=64)
        return root, root / "L/test.csv"
    root = fx.write_bv1(
        tmp_path / "bv1", {"s": [1.0, 1.1]}, split_of=lambda s, j: "test", hw=(8, 12), samples=16
    )
    return root, root / "test.csv"


@pytest.mark.parametrize("skip_bad", [False, True])
@pytest.mark.parametrize("layout", ["bv1", "bv2"])
def test_non_utf8_csv_is_named_with_its_position_even_with_skip_bad(tmp_path, layout, skip_bad):
    root, csv_path = _csv_root(tmp_path, layout)
    data = csv_path.read_bytes()
    lines = data.split(b"\n")
    lines[2] = lines[2].replace(b".npy", b"\xff.npy", 1)  # a Latin-1 / stray byte in row 2
    data = b"\n".join(lines)
    csv_path.write_bytes(data)
    off = data.index(b"\xff")
    col = off - data.rindex(b"\n", 0, off)
    with pytest.raises(ValueError) as err:
        build_dataset(layout, root, tmp_path / "data", skip_bad=skip_bad)
    assert str(err.value) == (
        f"{csv_path}: not UTF-8 text: byte 0xff at line 3, byte {col} of the line (file offset "
        f"{off}), invalid start byte; save the CSV as UTF-8 ({NOT_SKIPPED})"
    )
    assert not list((tmp_path / "data").glob(f"batvision/{layout}/*"))


def test_utf16_csv_is_named_as_such(tmp_path):
    root, csv_path = _csv_root(tmp_path, "bv2")
    csv_path.write_bytes(csv_path.read_text().encode("utf-16"))
    with pytest.raises(
        ValueError,
        match="not UTF-8 text .it starts with a UTF-16 byte-order mark.: "
        "byte 0xff at line 1, byte 1 of the line",
    ):
        build_dataset("bv2", root, tmp_path / "data", skip_bad=True)


def test_csv_with_utf8_byte_order_mark_is_read(tmp_path):
    root, csv_path = _csv_root(tmp_path, "bv2")
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())  # Excel's "CSV UTF-8"
    b = build_dataset("bv2", root, tmp_path / "data")
    assert set(_by_id(b, "test")) == {"L/0", "L/1"}
    # BV1: the BOM no longer hides the first column ('index', used to find scene changes).
    root, csv_path = _csv_root(tmp_path, "bv1")
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert [r.index for r in csv_index.list_bv1(str(root), "test")] == [0, 1]


@pytest.mark.parametrize("skip_bad", [False, True])
def test_csv_row_repeated_exactly_is_dropped_with_a_warning(tmp_path, caplog, skip_bad):
    root, csv_path = _csv_root(tmp_path, "bv2")
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines + [lines[1]]))  # row of line 2 again on line 4
    b = build_dataset("bv2", root, tmp_path / "data", skip_bad=skip_bad)
    assert set(_by_id(b, "test")) == {"L/0", "L/1"} and not b.skipped
    assert f"{csv_path}: line 4 repeats line 2 exactly (sample L/0): repeat dropped." in caplog.text


@pytest.mark.parametrize("skip_bad", [False, True])
@pytest.mark.parametrize("layout", ["bv1", "bv2"])
def test_csv_row_listed_twice_with_other_values_names_both_lines(tmp_path, layout, skip_bad):
    root, csv_path = _csv_root(tmp_path, layout)
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    col = "audio file name" if layout == "bv2" else "depth path"
    k = rows[0].index(col)
    other = list(rows[1])
    other[k] = rows[2][k]  # sample of line 2, with line 3's audio (bv2) / depth (bv1) file
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(rows + [other])
    sample = "L/0" if layout == "bv2" else f"s/{fx.bv1_stem(1.0)}"
    with pytest.raises(ValueError) as err:
        build_dataset(layout, root, tmp_path / "data", skip_bad=skip_bad)
    assert str(err.value) == (
        f"{csv_path}: sample {sample} is listed twice, on lines 2 and 4, "
        f"with different ['{col}']; keep one of the rows ({NOT_SKIPPED})"
    )


def test_malformed_csv_is_named_with_its_line(tmp_path):
    root, csv_path = _csv_root(tmp_path, "bv2")
    with open(csv_path, "a") as f:
        f.write('9,"' + "x" * 200_000 + '"\n')  # a field over the csv module's limit, on line 4
    with pytest.raises(ValueError) as err:
        build_dataset("bv2", root, tmp_path / "data")
    assert str(err.value) == (
        f"{csv_path}: malformed CSV at line 4 (field larger than field limit (131072))"
    )
