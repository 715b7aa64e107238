"""Physics and format tests of the room simulator (tfds_batvision/simulate.py and sim/)."""

import csv
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import batvision_fixture as fx
import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import soundfile as sf
from PIL import Image

from tfds_batvision import onset, simulate
from tfds_batvision.sim import acoustics, geometry
from tfds_batvision.sim import scene as scene_lib

REPO = Path(__file__).resolve().parents[1]
REAL_BV2 = fx.REAL_BV2_ROOT
STFT_HOP = 16  # docs/reference.md: BatVision STFT hop length.


def _tree_hash(root: str) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.mark.parametrize("d, alpha", [(3.0, 0.0), (1.25, 0.0), (4.0, 0.3), (2.0, -0.5)])
def test_wall_depth_is_analytic_z_depth(d, alpha):
    # Camera at x = d facing the x = 0 wall, yawed by alpha. For the pixel with normalised
    # x-coordinate xn the ray (xn, yn, 1) reaches x = 0 at z-depth d / (cos(alpha) + xn sin(alpha)).
    room = geometry.Room(np.array([20.0, 40.0, 40.0]))
    intr = geometry.Intrinsics.from_fov(32, 64, 60.0)
    pose = geometry.look_pose(np.array([d, 20.0, 20.0]), np.pi + alpha)
    hits = geometry.cast_rays(room, pose, intr)
    xn = (np.arange(intr.width) - intr.cx) / intr.fx
    expected = np.broadcast_to(d / (np.cos(alpha) + xn * np.sin(alpha)), hits.depth.shape)
    assert np.all(hits.surface == geometry.WALL_X0)
    np.testing.assert_allclose(hits.depth, expected, rtol=1e-12)
    np.testing.assert_allclose(hits.points[..., 0], 0.0, atol=1e-9)


def test_box_in_front_of_wall_has_its_own_depth():
    room = geometry.Room(
        np.array([20.0, 40.0, 40.0]),
        (geometry.Box(np.array([0.5, 19.0, 19.0]), np.array([1.0, 21.0, 21.0])),),
    )
    intr = geometry.Intrinsics.from_fov(32, 64, 60.0)
    pose = geometry.look_pose(np.array([3.0, 20.0, 20.0]), np.pi)
    hits = geometry.cast_rays(room, pose, intr)
    # The box face x = 1 is 2 m ahead and covers +-1 m: |xn|, |yn| < 0.5 at depth 2.
    xn = (np.arange(intr.width) - intr.cx) / intr.fx
    yn = (np.arange(intr.height) - intr.cy) / intr.fy
    on_box = (np.abs(yn)[:, None] < 0.5) & (np.abs(xn)[None, :] < 0.5)
    assert on_box.any() and (~on_box).any()
    np.testing.assert_allclose(hits.depth[on_box], 2.0, rtol=1e-12)
    np.testing.assert_allclose(hits.depth[~on_box], 3.0, rtol=1e-12)
    assert np.all(hits.surface[on_box] == geometry.NUM_ROOM_SURFACES)
    np.testing.assert_allclose(
        hits.normals[on_box], np.broadcast_to([1.0, 0, 0], (on_box.sum(), 3))
    )


# Camera position and heading looking straight at each wall of a 20 x 40 x 40 room from d = 3 m.
_FACING = {
    geometry.WALL_X0: ((3.0, 20.0, 20.0), np.pi),
    geometry.WALL_X1: ((17.0, 20.0, 20.0), 0.0),
    geometry.WALL_Y0: ((10.0, 3.0, 20.0), -np.pi / 2),
    geometry.WALL_Y1: ((10.0, 37.0, 20.0), np.pi / 2),
}


@pytest.mark.parametrize("wall", sorted(_FACING))
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_window_shows_the_outdoors_beyond_the_wall(wall, alpha):
    # A 1.5 m x 0.9 m pane (off-centre: its two in-plane axes cannot be swapped unnoticed) in the
    # wall 3 m ahead, the outdoor plane 5 m behind the wall. Through the pane every ray's z-depth
    # is (3 + 5) / 3 times that of the bare wall (parallel planes); elsewhere nothing changes.
    d, outside = 3.0, 5.0
    position, heading = _FACING[wall]
    axis = wall // 2
    in_plane = [a for a in range(3) if a != axis]  # (y, z) on the x walls, (x, z) on the y walls
    c = np.array(position)[in_plane]
    lo, hi = c + [-0.5, -0.4], c + [1.0, 0.5]
    bare = geometry.Room(np.array([20.0, 40.0, 40.0]))
    room = geometry.Room(bare.dims, (), (geometry.Window(wall, lo, hi, outside),))
    intr = geometry.Intrinsics.from_fov(32, 64, 60.0)
    pose = geometry.look_pose(np.array(position), heading + alpha)
    plain, hits = geometry.cast_rays(bare, pose, intr), geometry.cast_rays(room, pose, intr)
    assert np.all(plain.surface == wall)
    q = plain.points[..., in_plane]
    through = np.all((q >= lo) & (q <= hi), axis=-1)
    assert 0.05 < through.mean() < 0.5
    np.testing.assert_allclose(
        hits.depth[through], plain.depth[through] * (d + outside) / d, rtol=1e-12
    )
    beyond = -outside if wall % 2 == 0 else bare.dims[axis] + outside
    np.testing.assert_allclose(hits.points[through][:, axis], beyond, atol=1e-9)
    np.testing.assert_array_equal(hits.normals, plain.normals)  # the outdoor plane faces the room
    assert np.all(hits.surface[through] == geometry.NUM_ROOM_SURFACES)  # first after 0 boxes
    np.testing.assert_array_equal(hits.depth[~through], plain.depth[~through])
    assert np.all(hits.surface[~through] == wall)
    if wall != geometry.WALL_X0:
        return
    # A box in front of the pane hides part of it (nearest hit wins); the outdoor id follows the
    # boxes'.
    box = geometry.Box(np.array([0.5, 19.0, 19.8]), np.array([1.0, 20.0, 20.2]))
    boxed = geometry.cast_rays(geometry.Room(bare.dims, (box,), room.windows), pose, intr)
    on_box = boxed.surface == geometry.NUM_ROOM_SURFACES
    assert (through & on_box).any() and (through & ~on_box).any()
    assert np.all(boxed.depth[on_box] < d)
    assert np.all(boxed.surface[through & ~on_box] == geometry.NUM_ROOM_SURFACES + 1)


def test_windows_are_drawn_last_inside_their_walls_and_scale_with_the_scene():
    """window_prob changes nothing else of a scene (same room, rig, textures, echo); panes lie in
    their walls; the outdoors keeps the global-scale ambiguity (same image, depth x factor)."""
    base = dict(height=32, width=64, frames_per_scene=2, sequence=True, max_room=12.0)
    for seed in range(6):
        plain = scene_lib.sample_scene(np.random.default_rng(seed), scene_lib.SceneConfig(**base))
        cfg = scene_lib.SceneConfig(**base, window_prob=1.0)
        scene = scene_lib.sample_scene(np.random.default_rng(seed), cfg)
        assert plain.room.windows == () and len(scene.room.windows) == 4
        np.testing.assert_array_equal(scene.room.dims, plain.room.dims)
        np.testing.assert_array_equal(scene.poses, plain.poses)
        assert (scene.scale, scene.absorption) == (plain.scale, plain.absorption)
        assert len(scene.textures) == len(plain.textures) + 4 == scene.room.num_surfaces
        for a, b in zip(scene.textures, plain.textures):
            np.testing.assert_array_equal(a.base, b.base)
        for win in scene.room.windows:
            length = scene.room.dims[1] if win.wall < geometry.WALL_Y0 else scene.room.dims[0]
            assert 0 < win.lo[0] < win.hi[0] < length
            assert 0 < win.lo[1] < win.hi[1] < scene.room.dims[2]
            lo, hi = np.array(scene_lib.WINDOW_OUTSIDE_M) * scene.scale
            assert lo <= win.outside <= hi
        np.testing.assert_array_equal(
            scene_lib.record_echo(scene, 1, cfg, 800, 0, np.random.default_rng(0)),
            scene_lib.record_echo(plain, 1, cfg, 800, 0, np.random.default_rng(0)),
        )
    # Walls down to the smallest a room can have (1.5 m before scaling) still take a pane.
    small = scene_lib.SceneConfig(
        height=8, width=16, min_room=1.5, max_room=1.6, global_scale=False, window_prob=1.0
    )
    for seed in range(50):
        assert len(scene_lib.sample_scene(np.random.default_rng(seed), small).room.windows) == 4
    rgb, depth, hits = scene_lib.render_frame(scene, 1)
    rgb_big, depth_big, _ = scene_lib.render_frame(scene.scaled(2.5), 1)
    np.testing.assert_allclose(rgb_big, rgb, atol=1e-9)
    np.testing.assert_allclose(depth_big, 2.5 * depth, rtol=1e-9)


def test_a_field_of_view_range_is_drawn_last_and_sets_only_the_intrinsics():
    """hfov_range_deg changes nothing else of a scene; each scene's focal length is that of an
    hfov inside the range (fx = W / 2 / tan(hfov / 2)), and the scenes do not share one."""
    base = dict(height=32, width=64, frames_per_scene=2, sequence=True, max_room=12.0)
    fx_of = lambda hfov: 0.5 * 64 / np.tan(0.5 * np.deg2rad(hfov))
    focal = []
    for seed in range(8):
        plain = scene_lib.sample_scene(np.random.default_rng(seed), scene_lib.SceneConfig(**base))
        cfg = scene_lib.SceneConfig(**base, hfov_range_deg=(80.0, 105.0))
        scene = scene_lib.sample_scene(np.random.default_rng(seed), cfg)
        np.testing.assert_array_equal(scene.room.dims, plain.room.dims)
        np.testing.assert_array_equal(scene.poses, plain.poses)
        assert (scene.scale, scene.absorption) == (plain.scale, plain.absorption)
        k = scene.intrinsics
        assert fx_of(105.0) < k.fx < fx_of(80.0) and k.fy == k.fx
        assert (k.cx, k.cy, k.width, k.height) == (31.5, 15.5, 64, 32)
        focal.append(k.fx)
    assert len(set(focal)) == len(focal)


def test_the_outdoors_through_a_window_is_photometrically_consistent():
    """The outdoor plane is a static 3D surface: warping frame t+20 into t with the true depth and
    poses reproduces the pixels that see it as well as those of the room (a self-supervised depth
    model can learn its distance), and much better than no motion does."""
    cfg = scene_lib.SceneConfig(
        height=64,
        width=128,
        frames_per_scene=21,
        sequence=True,
        max_room=12.0,
        max_obstacles=0,
        window_prob=1.0,
    )
    for seed in range(20):
        scene = scene_lib.sample_scene(np.random.default_rng(seed), cfg)
        _, _, hits = scene_lib.render_frame(scene, 0)
        outdoors = scipy.ndimage.binary_erosion(
            hits.surface >= geometry.NUM_ROOM_SURFACES, iterations=2
        )  # away from the pane's frame
        if outdoors.mean() > 0.05:
            break
    err, ok, still = _warp_error(scene, 0, 20)
    m = ok & outdoors
    assert m.sum() > 200
    assert err[m].mean() < 0.02, err[m].mean()
    assert still[m].mean() > 3 * err[m].mean()


def _onset_after_direct(ear, start):
    """Arrival (samples after emission) of the strongest chirp copy after the direct path."""
    sig = acoustics.chirp()
    corr = np.correlate(ear, sig, mode="valid")
    # Zero-padded analytic signal: the FFT Hilbert transform is circular, and the direct path's
    # huge peak would otherwise leak into the far end.
    env = np.abs(scipy.signal.hilbert(corr, N=2 * len(corr)))[: len(corr)]
    # The direct path (13 samples) correlates with the chirp over its length; skip past that.
    skip = start + len(sig) + 20
    return skip + int(np.argmax(env[skip:])) - start


@pytest.mark.parametrize("d", [1.5, 3.0, 5.0, 8.0])
def test_first_wall_echo_arrives_at_round_trip_time(d):
    start = 287
    rec = acoustics.single_reflector_echo(d, num_samples=3500, chirp_start=start, noise_std=1e-5)
    sig = acoustics.chirp()
    expected = 2 * d / acoustics.SPEED_OF_SOUND * acoustics.SAMPLE_RATE
    for ear in rec:
        # Matched filter: correlation peak at the arrival lag of each copy of the chirp.
        arrival = _onset_after_direct(ear, start)
        assert abs(arrival - expected) <= STFT_HOP, (d, arrival, expected)
        env = np.abs(scipy.signal.hilbert(np.correlate(ear, sig, mode="valid")))
        direct = int(np.argmax(env)) - start
        assert abs(direct - 0.5 * acoustics.MIC_SPACING_M / acoustics.SPEED_OF_SOUND * 44100) <= 2


@pytest.mark.parametrize("d", [1.0, 2.5, 6.0])
def test_box_obstacle_echo_arrives_at_round_trip_time(d):
    # Rig in the middle of a huge room facing a box whose near face is d metres ahead: the box is
    # the only reflector within the recording.
    far = 200.0
    pose = geometry.look_pose(np.array([far, far, far]), np.pi)
    box = geometry.Box(
        np.array([far - d - 1.0, far - 1.0, far - 1.0]), np.array([far - d, far + 1.0, far + 1.0])
    )
    rec = acoustics.binaural_echo(
        np.array([2 * far] * 3),
        pose,
        num_samples=3000,
        chirp_start=0,
        absorption=0.2,
        max_order=1,
        noise_std=1e-5,
        rng=np.random.default_rng(0),
        boxes=(box,),
    )
    expected = 2 * d / acoustics.SPEED_OF_SOUND * acoustics.SAMPLE_RATE
    for ear in rec:
        assert abs(_onset_after_direct(ear, 0) - expected) <= STFT_HOP


def test_box_reflection_matches_pyroomacoustics_wall():
    # A large box face and a shoebox wall at the same distance give the same reflection.
    d, far = 3.0, 200.0
    mics = np.array([[d, far + 0.1, far], [d, far - 0.1, far]])
    wall = acoustics.room_impulse_response(
        np.array([d + far, 2 * far, 2 * far]),
        np.array([d, far, far]),
        mics,
        absorption=0.2,
        max_order=1,
    )
    shift = np.array([far - d, 0.0, 0.0])  # the box face sits at x = far - d in a huge room
    box = geometry.Box(
        np.array([far - d - 5.0, far - 50.0, far - 50.0]),
        np.array([far - d, far + 50.0, far + 50.0]),
    )
    mine = acoustics.box_reflections(
        [box], np.array([far, far, far]), mics + shift, absorption=0.2, length=wall.shape[1]
    )
    seg = slice(300, 1000)  # the reflection, away from the direct path
    for a, b in zip(wall[:, seg], mine[:, seg]):
        assert np.argmax(np.abs(a)) == np.argmax(np.abs(b))
        assert np.abs(b).max() == pytest.approx(np.abs(a).max(), rel=0.05)


def test_global_scale_gives_same_image_and_scaled_depth():
    cfg = scene_lib.SceneConfig(
        height=32, width=64, frames_per_scene=2, sequence=True, max_room=12.0, global_scale=True
    )
    scene = scene_lib.sample_scene(np.random.default_rng(3), cfg)
    rgb, depth, _ = scene_lib.render_frame(scene, 1)
    big = scene.scaled(2.5)
    rgb_big, depth_big, _ = scene_lib.render_frame(big, 1)
    np.testing.assert_allclose(rgb_big, rgb, atol=1e-9)
    np.testing.assert_allclose(depth_big, 2.5 * depth, rtol=1e-9)
    # The echo keeps the metric scale: the larger room echoes later, so the recordings differ.
    e = scene_lib.record_echo(scene, 1, cfg, 3200, 0, np.random.default_rng(0))
    e_big = scene_lib.record_echo(big, 1, cfg, 3200, 0, np.random.default_rng(0))
    assert np.abs(e - e_big).max() > 1e-3


def test_noglobal_scale_keeps_rig_height_and_global_scale_varies_it():
    fixed = scene_lib.SceneConfig(height=8, width=8, global_scale=False)
    heights = [
        scene_lib.sample_scene(np.random.default_rng(s), fixed).poses[:, 2, 3] for s in range(5)
    ]
    np.testing.assert_allclose(np.concatenate(heights), scene_lib.RIG_HEIGHT_M)
    scaled = scene_lib.SceneConfig(height=8, width=8, global_scale=True)
    scenes = [scene_lib.sample_scene(np.random.default_rng(s), scaled) for s in range(5)]
    assert np.ptp([s.poses[0, 2, 3] for s in scenes]) > 0.05
    for s in scenes:  # the scaled room stays inside the room-size range
        assert scaled.min_room - 1e-9 <= s.room.dims[:2].min()
        assert s.room.dims[:2].max() <= scaled.max_room + 1e-9


def test_canonical_rooms_below_the_size_range_are_scaled_into_it():
    """min_canonical_room draws narrow shapes (corridors) that global_scale puts in the size range;
    unset, or equal to min_room, the draws are those of before (same random stream)."""
    wide = scene_lib.SceneConfig(height=8, width=8, min_room=3.0, max_room=12.0)
    narrow = dataclasses.replace(wide, min_canonical_room=1.5)
    ratio = wide.max_room / wide.min_room
    shapes = []
    for s in range(60):
        scene = scene_lib.sample_scene(np.random.default_rng(s), narrow)
        floor = scene.room.dims[:2]
        assert wide.min_room - 1e-9 <= floor.min() and floor.max() <= wide.max_room + 1e-9
        assert floor.max() / floor.min() <= ratio + 1e-9  # the shape fits the range
        canonical = floor / scene.scale
        assert scene_lib.MIN_ROOM_M - 1e-9 <= canonical.min()
        shapes.append(canonical.min())
        # Rig height follows the scale: a 1.5 m-wide shape shows as a room twice as tall.
        np.testing.assert_allclose(scene.poses[:, 2, 3], scene_lib.RIG_HEIGHT_M * scene.scale)
    # Uniform shorter sides from 1.5 m: P(< 3 m) = 1 - (9/10.5)^2 = 0.27 per room.
    assert 5 <= sum(m < wide.min_room for m in shapes) <= 30
    same = dataclasses.replace(wide, min_canonical_room=wide.min_room)
    for s in range(5):
        a = scene_lib.sample_scene(np.random.default_rng(s), wide)
        b = scene_lib.sample_scene(np.random.default_rng(s), same)
        np.testing.assert_array_equal(a.room.dims, b.room.dims)
        np.testing.assert_array_equal(a.poses, b.poses)


def _warp_error(scene, t: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|frame s warped into frame t - frame t| per pixel [H, W] (bilinear, true depth and poses),
    the mask of pixels that land inside frame s, and the unwarped |frame s - frame t|."""
    rgb_t, depth_t, _ = scene_lib.render_frame(scene, t)
    rgb_s, _, _ = scene_lib.render_frame(scene, s)
    k, h, w = scene.intrinsics.matrix(), scene.intrinsics.height, scene.intrinsics.width
    pts_cam = geometry.camera_rays(scene.intrinsics) * depth_t[..., None]
    t_s_t = np.linalg.inv(scene.poses[s]) @ scene.poses[t]
    p = pts_cam @ t_s_t[:3, :3].T + t_s_t[:3, 3]
    uv = p @ k.T
    u, v = uv[..., 0] / uv[..., 2], uv[..., 1] / uv[..., 2]
    ok = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1) & (p[..., 2] > 0)
    u0 = np.clip(np.floor(u).astype(int), 0, w - 2)
    v0 = np.clip(np.floor(v).astype(int), 0, h - 2)
    a, b = (u - u0)[..., None], (v - v0)[..., None]
    warped = (
        (1 - a) * (1 - b) * rgb_s[v0, u0]
        + a * (1 - b) * rgb_s[v0, u0 + 1]
        + (1 - a) * b * rgb_s[v0 + 1, u0]
        + a * b * rgb_s[v0 + 1, u0 + 1]
    )
    return np.abs(warped - rgb_t).mean(-1), ok, np.abs(rgb_s - rgb_t).mean(-1)


def test_frames_of_a_sequence_are_photometrically_consistent():
    # Warp frame t+20 into frame t (the triple interval) with the true depth and poses: colours are
    # a function of the 3D point only, so the only error left is bilinear interpolation.
    cfg = scene_lib.SceneConfig(
        height=64, width=128, frames_per_scene=21, sequence=True, max_room=12.0, max_obstacles=0
    )
    scene = scene_lib.sample_scene(np.random.default_rng(5), cfg)
    err, ok, still = _warp_error(scene, 0, 20)
    assert ok.mean() > 0.5
    assert err[ok].mean() < 0.02, err[ok].mean()
    # A wrong pose (no motion) gives a much larger error: the test can fail.
    assert still[ok].mean() > 3 * err[ok].mean()


@pytest.mark.parametrize("motion", [{}, {"step_m": 0.01, "max_turn_deg": 0.25}])
def test_sequence_heading_turns_at_most_max_turn_per_frame(motion):
    # The rig's heading (its camera's forward axis in the floor plane) changes by at most
    # max_turn_deg between consecutive frames, so a t-20 / t / t+20 triple turns at most 20x that:
    # also on elongated ellipses, whose ends the rig rounds faster than their parameter moves.
    # The default (MAX_TURN_RAD, STEP_M) and the quickstart's slower rig both hold.
    cfg = scene_lib.SceneConfig(
        height=8,
        width=16,
        frames_per_scene=100,
        sequence=True,
        min_room=3.0,
        max_room=12.0,
        max_obstacles=0,
        **motion,
    )
    worst, moved = 0.0, []
    for seed in range(40):
        scene = scene_lib.sample_scene(np.random.default_rng(seed), cfg)
        fwd = scene.poses[:, :2, 2]
        heading = np.unwrap(np.arctan2(fwd[:, 1], fwd[:, 0]))
        worst = max(worst, float(np.abs(np.diff(heading)).max()))
        moved.append(
            np.linalg.norm(np.diff(scene.poses[:, :2, 3], axis=0), axis=-1).mean() / scene.scale
        )
    assert worst <= np.deg2rad(cfg.max_turn_deg) * (1 + 1e-6), np.degrees(worst)
    # ... and it still moves: on average at least half the nominal step per frame, and no chord
    # is longer than the arc step it cuts.
    assert 0.5 * cfg.step_m < np.mean(moved) <= cfg.step_m * (1 + 1e-6), np.mean(moved)
    if motion:
        assert cfg.step_m == motion["step_m"] and cfg.max_turn_deg == motion["max_turn_deg"]
    else:
        assert cfg.step_m == scene_lib.STEP_M
        assert np.isclose(np.deg2rad(cfg.max_turn_deg), scene_lib.MAX_TURN_RAD)


def test_assign_splits_holds_out_whole_scenes():
    splits = simulate.assign_splits(10, (0.6, 0.2, 0.2), seed=1)
    assert sorted(splits) == ["test"] * 2 + ["train"] * 6 + ["val"] * 2
    assert simulate.assign_splits(3, (0.6, 0.2, 0.2), 0).count("test") == 1
    assert splits == simulate.assign_splits(10, (0.6, 0.2, 0.2), seed=1)


def test_bv2_files_have_the_real_formats(tmp_path):
    root = simulate.simulate_dataset(
        "bv2",
        str(tmp_path / "bv2"),
        3,
        seed=0,
        height=32,
        width=64,
        frames_per_scene=2,
        progress=False,
    )
    real_header = (REAL_BV2 / "unknown_location" / "test.csv").read_bytes().split(b"\n")[0]
    locations = sorted(os.listdir(root))
    assert locations == ["sim_room_0000", "sim_room_0001", "sim_room_0002"]
    seen = []
    for loc in locations:
        for split in simulate.SPLITS:
            data = (Path(root) / loc / f"{split}.csv").read_bytes()
            assert data.split(b"\n")[0] == real_header
            with open(Path(root) / loc / f"{split}.csv") as f:
                rows = list(csv.DictReader(f))
            if rows:
                seen.append((loc, split))
            for row in rows:
                wav = os.path.join(root, row["audio path"], row["audio file name"])
                info = sf.info(wav)
                assert (info.samplerate, info.channels, info.frames) == (44100, 2, 20000)
                assert info.subtype == "PCM_32"
                audio, _ = sf.read(wav, dtype="int32")
                assert audio.dtype == np.int32 and np.abs(audio).max() > 2**24
                # The chirp reaches the ears at sample 287, as in the real sample (the detector
                # measures the simulator's arrivals 2 samples late: the sweep's fade-in).
                assert 287 <= onset.detect_onset(audio.T) <= 290
                img = Image.open(os.path.join(root, row["camera path"], row["camera file name"]))
                assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 32))
                depth = np.load(os.path.join(root, row["depth path"], row["depth file name"]))
                assert depth.dtype == np.uint16 and depth.shape == (32, 64)
                assert 0 < (depth == 0).mean() < 0.6 and depth.max() > 0
        intr = json.loads((Path(root) / loc / "intrinsics.json").read_text())
        assert sorted(intr) == ["cx", "cy", "fx", "fy", "height", "width"]
        assert (intr["width"], intr["height"], intr["cx"]) == (64, 32, 31.5)
    # Each location's rows sit in exactly one split.
    assert sorted(loc for loc, _ in seen) == locations


def test_bv1_files_poses_and_depth(tmp_path):
    root = simulate.simulate_dataset(
        "bv1",
        str(tmp_path / "bv1"),
        3,
        seed=0,
        height=32,
        width=64,
        frames_per_scene=4,
        progress=False,
    )
    rows = []
    for split in simulate.SPLITS:
        with open(os.path.join(root, f"{split}.csv")) as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames) == simulate.BV1_COLUMNS
            rows += list(reader)
    assert len(rows) == 12
    sessions = sorted({r["session"] for r in rows})
    assert sessions == ["2019.08.01", "2019.08.02", "2019.08.03"]
    some_nan = some_zero = False
    for r in rows:
        left = np.load(os.path.join(root, r["audio path left"]))
        right = np.load(os.path.join(root, r["audio path right"]))
        assert left.dtype == np.float32 and left.shape == (4180,) and right.shape == (4180,)
        # Real BV1 lead-in: ~980 near-silent samples before the chirp.
        assert 980 <= onset.detect_onset(np.stack([left, right])) <= 983
        assert not np.array_equal(left, right)  # two ears, different positions
        depth = np.load(os.path.join(root, r["depth path"]))
        assert depth.dtype == np.float32 and depth.shape == (32, 64)
        some_nan |= bool(np.isnan(depth).any())
        some_zero |= bool((depth == 0).any())
        assert Image.open(os.path.join(root, r["camera path left"])).size == (64, 32)
    assert some_nan and some_zero
    # The written depth equals the ray-cast z-depth of the pose recorded for that frame.
    session = rows[0]["session"]
    k, poses = simulate.load_bv1_geometry(root, session)
    stems = [Path(r["camera path left"]).stem for r in rows if r["session"] == session]
    assert sorted(poses) == stems  # rows time-ordered, one pose per frame
    cfg = simulate.scene_config("bv1", height=32, width=64, frames_per_scene=4)
    scene = scene_lib.sample_scene(np.random.default_rng([0, int(session[-2:]) - 1]), cfg)
    np.testing.assert_allclose(poses[stems[2]], scene.poses[2])
    np.testing.assert_allclose(k, scene.intrinsics.matrix())
    depth = np.load(os.path.join(root, session, "depth", stems[2] + ".npy"))
    _, true_depth, _ = scene_lib.render_frame(scene, 2)
    ok = np.isfinite(depth) & (depth > 0)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(depth[ok], 1000 * true_depth[ok], rtol=1e-6)
    for pose in poses.values():  # rotation is orthonormal and right-handed
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)


@pytest.mark.parametrize("layout", ["bv1", "bv2"])
def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path, layout):
    kw = dict(height=16, width=32, frames_per_scene=3, progress=False)
    a = simulate.simulate_dataset(layout, str(tmp_path / "a"), 3, seed=4, **kw)
    b = simulate.simulate_dataset(layout, str(tmp_path / "b"), 3, seed=4, workers=2, **kw)
    c = simulate.simulate_dataset(layout, str(tmp_path / "c"), 3, seed=5, **kw)
    assert _tree_hash(a) == _tree_hash(b)
    assert _tree_hash(a) != _tree_hash(c)


def test_script_without_main_guard_gets_an_error_not_a_hang(tmp_path):
    """With JAX imported, workers start with spawn and re-import the calling script; a script
    without the `__main__` guard makes each worker fail at start. multiprocessing.Pool replaced
    them forever (a silent hang); the run must stop with an error that names the guard."""
    script = tmp_path / "unguarded.py"
    out = tmp_path / "root"
    script.write_text(
        "import jax  # noqa: F401\n"
        "from tfds_batvision.simulate import simulate_dataset\n"
        f"simulate_dataset('bv2', {str(out)!r}, 4, height=8, width=16, workers=2)\n"
    )
    # A script's folder, not the working directory, starts its sys.path: name the repository.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    r = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr
    assert "WorkerDiedError" in r.stderr and 'if __name__ == "__main__":' in r.stderr
    assert not out.exists()  # nothing published; the staging tree is kept for a rerun


def test_refuses_to_write_into_a_non_empty_dir(tmp_path):
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        simulate.simulate_dataset("bv2", str(tmp_path), 1, height=8, width=8, progress=False)


def test_bv1_session_with_two_scenes_has_a_time_jump(tmp_path):
    root = simulate.simulate_dataset(
        "bv1",
        str(tmp_path / "bv1"),
        2,
        seed=2,
        height=16,
        width=32,
        frames_per_scene=3,
        scenes_per_session=2,
        split_fractions=(1, 0, 0),
        progress=False,
    )
    with open(os.path.join(root, "train.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["session"] for r in rows} == {"2019.08.01"}
    times = np.array([float(r["time"]) for r in rows])
    np.testing.assert_allclose(np.diff(times), [0.1, 0.1, 600 - 0.2, 0.1, 0.1], atol=1e-6)
    assert [int(r["index"]) for r in rows] == list(range(6))
    _, poses = simulate.load_bv1_geometry(root, "2019.08.01")
    stems = [Path(r["camera path left"]).stem for r in rows]
    assert stems[0] == "100000.000000" and stems[3] == "101000.000000"
    assert sorted(poses) == stems


def test_bv1_test_frame_stride_keeps_exactly_those_frames_of_the_same_walks(tmp_path):
    """Every k-th frame of each test walk, byte for byte the frame of the full walk; train and
    val walks whole; time stamps, indices and poses those of the full sequence."""
    kw = dict(seed=3, height=16, width=32, frames_per_scene=7, progress=False)
    kw["split_fractions"] = (1, 0, 2)
    full = simulate.simulate_dataset("bv1", str(tmp_path / "full"), 3, **kw)
    thin = simulate.simulate_dataset("bv1", str(tmp_path / "thin"), 3, test_frame_stride=3, **kw)

    def rows(root, split):
        with open(os.path.join(root, f"{split}.csv")) as f:
            return list(csv.DictReader(f))

    assert rows(thin, "train") == rows(full, "train")
    full_test, thin_test = rows(full, "test"), rows(thin, "test")
    assert len(full_test) == 14 and len(thin_test) == 6  # frames 0, 3, 6 of two walks
    assert thin_test == [r for r in full_test if int(r["index"]) % 7 in (0, 3, 6)]
    for r in thin_test:
        for col in ("camera path left", "depth path", "audio path left", "audio path right"):
            with (
                open(os.path.join(full, r[col]), "rb") as a,
                open(os.path.join(thin, r[col]), "rb") as b,
            ):
                assert a.read() == b.read(), (r[col], col)
    for session in {r["session"] for r in thin_test}:
        _, p_full = simulate.load_bv1_geometry(full, session)
        _, p_thin = simulate.load_bv1_geometry(thin, session)
        assert set(p_thin) < set(p_full)
        for stem, pose in p_thin.items():
            np.testing.assert_array_equal(pose, p_full[stem])


def test_bv1_rig_motion_per_frame_is_configurable(tmp_path):
    """Half the step and half the turn bound put the rig on the same path at half the speed:
    frame 2k of the slow session is frame k of the default one (same seed, same room)."""

    def poses(name, frames, **motion):
        root = simulate.simulate_dataset(
            "bv1",
            str(tmp_path / name),
            1,
            seed=5,
            height=8,
            width=16,
            frames_per_scene=frames,
            split_fractions=(1, 0, 0),
            progress=False,
            **motion,
        )
        _, p = simulate.load_bv1_geometry(root, "2019.08.01")
        return np.stack([p[k] for k in sorted(p)])

    fast = poses("fast", 3)
    slow = poses(
        "slow",
        5,
        step_m=scene_lib.STEP_M / 2,
        max_turn_deg=float(np.degrees(scene_lib.MAX_TURN_RAD)) / 2,
    )
    np.testing.assert_allclose(slow[::2], fast, atol=1e-5)
    assert np.linalg.norm(slow[1, :3, 3] - slow[0, :3, 3]) > 1e-3  # it does move in between


def test_ear_beside_a_wall_stays_inside_the_room():
    """A rig closer to a wall than half its metric ear spacing (scaled-down rooms) still records."""
    pose = np.eye(4)  # camera x (the ear axis) along world x
    pose[:3, 3] = [0.05, 1.0, 0.5]  # left ear would sit at x = -0.05, behind the wall
    rec = acoustics.binaural_echo(
        np.array([3.0, 2.0, 1.0]),
        pose,
        num_samples=800,
        chirp_start=0,
        absorption=0.2,
        max_order=1,
        noise_std=0.0,
        rng=np.random.default_rng(0),
    )
    assert np.all(np.isfinite(rec)) and np.abs(rec).max() > 0.1  # the direct path is there


def test_supersampling_averages_subpixel_rays_and_reduces_warp_error():
    """A pixel's colour with supersample=2 is the mean of the four rays through its quarter
    centres (hand-built 2x finer camera); depth stays the centre ray's. And it is what a camera
    does for a reason: warping frame t+20 into t at 48x96 with the true depth and pose leaves a
    smaller error than with point-sampled (aliased) frames."""
    cfg = scene_lib.SceneConfig(
        height=48, width=96, frames_per_scene=21, sequence=True, max_room=12.0
    )
    scene = scene_lib.sample_scene(np.random.default_rng(8), cfg)
    rgb1, depth1, _ = scene_lib.render_frame(scene, 0)
    rgb2, depth2, _ = scene_lib.render_frame(scene, 0, supersample=2)
    np.testing.assert_array_equal(depth2, depth1)
    k = scene.intrinsics
    # Pixel (v, u) covers [u - 0.5, u + 0.5]; its sub-pixel centres are u -/+ 0.25, i.e. the
    # finer camera's principal point is 2 * cx + 0.5.
    fine = geometry.Intrinsics(
        2 * k.fx, 2 * k.fy, 2 * k.cx + 0.5, 2 * k.cy + 0.5, 2 * k.width, 2 * k.height
    )
    from tfds_batvision.sim import render

    sub = render.shade(
        geometry.cast_rays(scene.room, scene.poses[0], fine), scene.textures, scene.scale
    )
    for v, u in ((0, 0), (20, 37), (47, 95)):
        np.testing.assert_allclose(
            rgb2[v, u], sub[2 * v : 2 * v + 2, 2 * u : 2 * u + 2].mean((0, 1)), atol=1e-12
        )
    assert np.abs(rgb2 - rgb1).mean() > 1e-3  # not the point-sampled image

    def warp_error(ss):
        rgb_t, depth_t, _ = scene_lib.render_frame(scene, 0, ss)
        rgb_s, _, _ = scene_lib.render_frame(scene, 20, ss)
        pts = geometry.camera_rays(k) * depth_t[..., None]
        t_s_t = np.linalg.inv(scene.poses[20]) @ scene.poses[0]
        uv = (pts @ t_s_t[:3, :3].T + t_s_t[:3, 3]) @ k.matrix().T
        u, v = uv[..., 0] / uv[..., 2], uv[..., 1] / uv[..., 2]
        ok = (u >= 0) & (u <= k.width - 1) & (v >= 0) & (v <= k.height - 1)
        warped = np.stack(
            [
                scipy.ndimage.map_coordinates(rgb_s[..., c], [v[ok], u[ok]], order=1)
                for c in range(3)
            ],
            -1,
        )
        return np.abs(warped - rgb_t[ok]).mean()

    e1, e2 = warp_error(1), warp_error(2)
    assert e2 < 0.8 * e1, (e2, e1)


# ---- impossible flags, interrupted runs ---------------------------------------------------------

_TINY = dict(height=8, width=8, frames_per_scene=1, progress=False)
_FLAG_CASES = {
    "height": (dict(height=0), "--height must be an integer >= 1, got 0"),
    "width": (dict(width=-3), "--width must be an integer >= 1, got -3"),
    "scenes": (dict(num_scenes=0), "--scenes must be an integer >= 1, got 0"),
    "frames": (dict(frames_per_scene=0), "--frames_per_scene must be an integer >= 1, got 0"),
    "seed": (dict(seed=-1), "--seed must be an integer >= 0, got -1"),
    "workers": (dict(workers=-2), "--workers must be an integer >= 1, got -2"),
    "workers0": (dict(workers=0), "--workers must be an integer >= 1, got 0"),
    "max_order": (dict(max_order=-1), "--max_order must be an integer >= 0, got -1"),
    "max_obstacles": (dict(max_obstacles=-1), "--max_obstacles must be an integer >= 0, got -1"),
    "supersample": (dict(supersample=0), "--supersample must be an integer >= 1, got 0"),
    "scenes_per_session": (
        dict(scenes_per_session=0),
        "--scenes_per_session must be an integer >= 1, got 0",
    ),
    "min_room": (dict(min_room=0.0), "--min_room must be a finite number > 0 (metres), got 0.0"),
    "max_room": (
        dict(max_room=float("nan")),
        "--max_room must be a finite number > 0 (metres), got nan",
    ),
    "step_m": (dict(step_m=-0.1), "--step_m must be a finite number >= 0, got -0.1"),
    "max_turn_deg": (
        dict(max_turn_deg=float("inf")),
        "--max_turn_deg must be a finite number >= 0, got inf",
    ),
    "window_prob": (dict(window_prob=1.5), "--window_prob must be in [0, 1], got 1.5"),
    "window_prob_neg": (dict(window_prob=-0.1), "--window_prob must be in [0, 1], got -0.1"),
    "hfov_range_deg": (
        dict(hfov_range_deg=(100.0, 80.0)),
        "--hfov_range_deg must be two numbers (lo, hi) with 0 < lo <= hi < 180 (degrees), "
        "got (100.0, 80.0)",
    ),
    "hfov_range_deg_three": (
        dict(hfov_range_deg=(80.0, 90.0, 100.0)),
        "--hfov_range_deg must be two numbers (lo, hi) with 0 < lo <= hi < 180 (degrees), "
        "got (80.0, 90.0, 100.0)",
    ),
    "hfov_range_deg_bv1": (
        dict(layout="bv1", hfov_range_deg=(80.0, 100.0)),
        "--hfov_range_deg is for bv2 only: a BV1 root has one intrinsics.json for all its sessions",
    ),
    "fractions_two": (
        dict(split_fractions=(1, 0)),
        "--split_fractions must be three finite non-negative numbers "
        "(train,val,test) with a positive sum, got [1, 0]",
    ),
    "fractions_zero": (
        dict(split_fractions=(0, 0, 0)),
        "--split_fractions must be three finite non-negative numbers "
        "(train,val,test) with a positive sum, got [0, 0, 0]",
    ),
    "min_canonical_room": (
        dict(min_canonical_room=40.0),
        "--min_canonical_room must be a finite number in (0, --max_room 30.0] (metres), got 40.0",
    ),
    "min_canonical_room_unscaled": (
        dict(min_canonical_room=2.0, global_scale=False),
        "--min_canonical_room shapes the room before --global_scale scales it; without "
        "--global_scale the room as drawn is its size (use --min_room)",
    ),
    "rooms_swapped": (
        dict(min_room=5.0, max_room=4.0),
        "--min_room 5.0 is larger than --max_room 4.0",
    ),
    "room_too_small": (
        dict(min_room=0.5, max_room=1.0, global_scale=False),
        "--max_room 1.0 is below the smallest room the rig fits in, 1.5 m, without --global_scale",
    ),
    "past_midnight": (
        dict(layout="bv1", num_scenes=85, scenes_per_session=85),
        "--scenes_per_session 85 runs a session's time stamps past midnight: at "
        "most 84 scenes of 600 s fit after 10:00",
    ),
    "layout": (dict(layout="bv3"), "--layout must be one of ['bv1', 'bv2'], got 'bv3'"),
    "test_frame_stride": (
        dict(layout="bv1", test_frame_stride=2),
        "--test_frame_stride must be an integer in [1, --frames_per_scene 1], got 2",
    ),
    "test_frame_stride_not_int": (
        dict(test_frame_stride=1.5),
        "--test_frame_stride must be an integer in [1, --frames_per_scene 1], got 1.5",
    ),
    "test_frame_stride_views": (
        dict(frames_per_scene=4, test_frame_stride=2),
        "--test_frame_stride is for bv1 sequences: BV2's views of a room are independent "
        "(use --frames_per_scene)",
    ),
}


@pytest.mark.parametrize("case", sorted(_FLAG_CASES))
def test_impossible_flag_is_named_before_anything_is_written(tmp_path, case):
    overrides, message = _FLAG_CASES[case]
    kw = {**_TINY, "layout": "bv2", "num_scenes": 1, **overrides}
    out = tmp_path / "out"
    with pytest.raises(simulate.BadFlagError) as err:
        simulate.simulate_dataset(kw.pop("layout"), str(out), kw.pop("num_scenes"), **kw)
    assert str(err.value) == message
    assert os.listdir(tmp_path) == []  # neither --out nor <out>.incomplete


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--height=0", "--height must be an integer >= 1, got 0"),
        ("--hfov_range_deg=80", "--hfov_range_deg must be two numbers lo,hi (degrees), got ['80']"),
        (
            "--split_fractions=1,x,0",
            "--split_fractions must be three finite non-negative numbers "
            "(train,val,test) with a positive sum, got ['1', 'x', '0']",
        ),
    ],
)
def test_simulate_command_impossible_flag_is_one_line(tmp_path, flag, message):
    cmd = [sys.executable, "-m", "tfds_batvision.simulate", f"--out={tmp_path / 'out'}", flag]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip() == f"tfds_batvision.simulate: {message}"
    assert os.listdir(tmp_path) == []


class _Killed(Exception):
    """Stands for a kill -9: simulate_dataset has no clean-up handler that it could run."""


def _crash_on(monkeypatch, name: str, when) -> None:
    """Makes simulate.<name> raise _Killed on the call whose args satisfy ``when(n, args)``."""
    original = getattr(simulate, name)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(args)
        if when(len(calls), args):
            raise _Killed(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(simulate, name, wrapped)


def _count_scenes(monkeypatch, layout: str) -> list[int]:
    """Records the index of every scene simulate_dataset simulates from now on."""
    name = f"_simulate_{layout}_scene"
    original, seen = getattr(simulate, name), []

    def wrapped(out_dir, index, *args):
        seen.append(index)
        return original(out_dir, index, *args)

    monkeypatch.setattr(simulate, name, wrapped)
    return seen


@pytest.mark.parametrize("layout, where", [("bv2", "scene"), ("bv1", "scene"), ("bv1", "index")])
def test_interrupted_run_leaves_no_tree_and_rerun_resumes_byte_identical(
    tmp_path, monkeypatch, layout, where
):
    kw = dict(_TINY, frames_per_scene=2, seed=3)
    ref = simulate.simulate_dataset(layout, str(tmp_path / "ref"), 3, **kw)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        if where == "scene":  # the 4th image: scene 0 complete, scene 1 half-written
            _crash_on(m, "_write_image", lambda n, args: n == 4)
        else:  # all scenes done, killed while writing the session's poses.json
            _crash_on(m, "_write_json", lambda n, args: args[0].endswith("poses.json"))
        with pytest.raises(_Killed):
            simulate.simulate_dataset(layout, str(out), 3, **kw)
    assert not out.exists()  # nothing a reader could take for a (half) dataset
    assert (tmp_path / "out.incomplete").is_dir()
    redone = _count_scenes(monkeypatch, layout)
    assert simulate.simulate_dataset(layout, str(out), 3, **kw) == str(out)
    assert redone == ([1, 2] if where == "scene" else [])
    assert _tree_hash(str(out)) == _tree_hash(ref)
    assert sorted(os.listdir(tmp_path)) == ["out", "ref"]


def test_interrupted_overwrite_keeps_the_old_tree_and_other_settings_start_clean(
    tmp_path, monkeypatch
):
    kw = dict(_TINY, frames_per_scene=2)
    out = str(tmp_path / "out")
    old = _tree_hash(simulate.simulate_dataset("bv2", out, 2, seed=1, **kw))
    with monkeypatch.context() as m:
        _crash_on(m, "_write_image", lambda n, args: n == 2)
        with pytest.raises(_Killed):
            simulate.simulate_dataset("bv2", out, 2, seed=2, overwrite=True, **kw)
    assert _tree_hash(out) == old  # the old tree stays whole until the new one is complete
    with pytest.raises(FileExistsError, match=f"{out} is not empty"):
        simulate.simulate_dataset("bv2", out, 2, seed=2, **kw)  # refused as before
    # Rerun with other settings: the interrupted seed-2 run is discarded, not mixed in.
    redone = _count_scenes(monkeypatch, "bv2")
    simulate.simulate_dataset("bv2", out, 2, seed=5, overwrite=True, **kw)
    assert redone == [0, 1]
    assert _tree_hash(out) == _tree_hash(
        simulate.simulate_dataset("bv2", str(tmp_path / "ref"), 2, seed=5, **kw)
    )
    assert sorted(os.listdir(tmp_path)) == ["out", "ref"]


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(simulate.BadFlagError) as err:
        simulate.simulate_dataset("bv2", str(tmp_path / "out"), 1, **_TINY)
    assert str(err.value) == f"--out {tmp_path / 'out'} exists and is not a folder"
