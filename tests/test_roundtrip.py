"""simulate -> build -> read: the dataset holds what the simulator wrote (issue 4)."""

import io
import os

import numpy as np
import PIL.Image
import pytest
import soundfile

from tfds_batvision import simulate
from tfds_batvision.build import build_dataset
from tfds_batvision.sim import scene as scene_lib

H, W = 24, 40


def _as_str(x):
    return x.decode() if isinstance(x, bytes) else str(x)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("rt")
    bv2 = simulate.simulate_dataset(
        "bv2",
        str(base / "bv2"),
        num_scenes=3,
        seed=3,
        height=H,
        width=W,
        frames_per_scene=2,
        progress=False,
    )
    bv1 = simulate.simulate_dataset(
        "bv1",
        str(base / "bv1"),
        num_scenes=3,
        seed=4,
        height=H,
        width=W,
        frames_per_scene=42,
        progress=False,
    )
    return base, bv2, bv1


def test_bv2_round_trip(roots):
    base, root, _ = roots
    builder = build_dataset("bv2", root, base / "tfds")
    n = 0
    cfg = simulate.scene_config("bv2", height=H, width=W, frames_per_scene=2)
    for split in ("train", "val", "test"):
        for ex in builder.as_data_source(split):
            n += 1
            loc, i = _as_str(ex["sample_id"]).split("/")
            depth_mm = np.load(os.path.join(root, loc, "depth", f"depth_{i}.npy"))
            np.testing.assert_array_equal(ex["depth"], depth_mm.astype(np.float32) / 1000.0)
            pcm, sr = soundfile.read(
                os.path.join(root, loc, "audio", f"audio_{i}.wav"), dtype="int32"
            )
            assert sr == 44100
            np.testing.assert_array_equal(ex["audio"], (pcm.T / 2.0**31).astype(np.float32))
            # RGB equals the simulator's exact rendering within JPEG error.
            scene_index = int(loc.rsplit("_", 1)[1])
            scene = scene_lib.sample_scene(np.random.default_rng([3, scene_index]), cfg)
            rgb, depth_m, _ = scene_lib.render_frame(scene, int(i))
            decoded = np.asarray(PIL.Image.open(io.BytesIO(ex["image"])), np.float32) / 255.0
            assert np.abs(decoded - rgb).mean() < 0.03
            valid = ex["depth"] > 0
            np.testing.assert_allclose(ex["depth"][valid], depth_m[valid], atol=5e-4)
    assert n == 6


def test_bv1_and_triples_round_trip(roots):
    base, _, root = roots
    bv1 = build_dataset("bv1", root, base / "tfds")
    ex = next(iter(bv1.as_data_source("train")))
    session, stem = _as_str(ex["sample_id"]).split("/")
    depth_mm = np.load(os.path.join(root, session, "depth", f"{stem}.npy"))
    expected = np.where(np.isfinite(depth_mm) & (depth_mm > 0), depth_mm / 1000.0, 0.0)
    np.testing.assert_allclose(ex["depth"], expected, rtol=1e-6)
    left = np.load(os.path.join(root, session, "audio", "raw_long", f"{stem}_left.npy"))
    right = np.load(os.path.join(root, session, "audio", "raw_long", f"{stem}_right.npy"))
    np.testing.assert_array_equal(ex["audio"], np.stack([left, right]))
    png = PIL.Image.open(os.path.join(root, session, "camera", "left", f"{stem}.png"))
    np.testing.assert_array_equal(
        np.asarray(PIL.Image.open(io.BytesIO(ex["image"]))), np.asarray(png)
    )

    triples = build_dataset("bv1_triples", root, base / "tfds")
    k_true, poses = simulate.load_bv1_geometry(root, session)
    count = 0
    for split in ("train", "val", "test"):
        for t in triples.as_data_source(split):
            count += 1
            sess, centre = _as_str(t["sample_id"]).split("/")
            k_true, poses = simulate.load_bv1_geometry(root, sess)
            stems = sorted(poses)
            c = stems.index(centre)
            # t-20, t, t+20 of the same session, with their true poses and lossless frames.
            for j, offset in enumerate((-20, 0, 20)):
                np.testing.assert_allclose(t["poses"][j], poses[stems[c + offset]], atol=1e-6)
                img = np.asarray(PIL.Image.open(io.BytesIO(t["images"][j])))
                ref = np.asarray(
                    PIL.Image.open(
                        os.path.join(root, sess, "camera", "left", f"{stems[c + offset]}.png")
                    )
                )
                np.testing.assert_array_equal(img, ref)
            np.testing.assert_allclose(t["intrinsics"], k_true, rtol=1e-6)
    # 42 frames per session give centres 20 and 21: two triples for each of the 3 sessions.
    assert count == 6
