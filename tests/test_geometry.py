"""Geometry: hand cases, round trips, and the physics of view synthesis on an analytic scene."""

import jax
import jax.numpy as jnp
import numpy as np
import synthetic_scene as scene
from scipy.spatial.transform import Rotation

from avs_jax import geometry
from avs_jax.losses.photometric import reprojection_loss


def test_disp_to_depth_spans_min_and_max():
    scaled, depth = geometry.disp_to_depth(jnp.array([0.0, 1.0, 0.5]), 0.1, 100.0)
    np.testing.assert_allclose(np.asarray(depth[:2]), [100.0, 0.1], rtol=1e-6)
    # Halfway in disparity, not in depth: 1 / (0.01 + 0.5 * (10 − 0.01)).
    np.testing.assert_allclose(float(depth[2]), 1 / (0.01 + 0.5 * 9.99), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(scaled * depth), 1.0, rtol=1e-6)


def test_project_backproject_round_trip_returns_pixel_grid():
    h, w = 6, 8
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 20.0, size=(2, h, w)).astype(np.float32)
    K = np.stack([scene.intrinsics(h, w, 7.0), scene.intrinsics(h, w, 11.0)]).astype(np.float32)
    inv_K = geometry.inverse_3x3(jnp.asarray(K))
    np.testing.assert_allclose(np.asarray(inv_K), np.linalg.inv(K), rtol=1e-5, atol=1e-7)
    points = geometry.backproject(jnp.asarray(depth), inv_K)
    np.testing.assert_allclose(np.asarray(points[..., 2]), depth, rtol=1e-5)
    grid = geometry.project(points, jnp.asarray(K), jnp.broadcast_to(jnp.eye(4), (2, 4, 4)))
    # Back from [−1, 1] to pixels with Monodepth2's normalisation.
    pix = (np.asarray(grid) / 2 + 0.5) * np.array([w - 1, h - 1])
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    np.testing.assert_allclose(pix[..., 0], np.broadcast_to(u, (2, h, w)), atol=1e-4)
    np.testing.assert_allclose(pix[..., 1], np.broadcast_to(v, (2, h, w)), atol=1e-4)
    # Sampling at the identity grid returns the image itself.
    image = rng.uniform(size=(2, h, w, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(geometry.bilinear_sample(jnp.asarray(image), grid)), image, atol=1e-5
    )


def test_bilinear_sample_hand_cases_and_border_padding():
    image = jnp.array([[0.0, 10.0], [20.0, 30.0]]).reshape(1, 2, 2, 1)
    # align_corners=True: −1 and 1 are the centres of the first and last pixels.
    grid = jnp.array([[[0.0, 0.0], [-1.0, -1.0], [1.0, 1.0], [-3.0, 0.0], [0.0, 5.0]]])
    out = np.asarray(geometry.bilinear_sample(image, grid[:, None]))[0, 0, :, 0]
    # centre = mean of four; corners; far left clamps to x = 0 (y halfway); far below to y = 1.
    np.testing.assert_allclose(out, [15.0, 0.0, 30.0, 10.0, 25.0], atol=1e-5)
    # align_corners=False: −1 is the left edge of pixel 0 (coordinate −0.5), clamped to 0;
    # x = 0 is the image centre, again the mean.
    out = np.asarray(geometry.bilinear_sample(image, grid[:, None, :2], align_corners=False))
    np.testing.assert_allclose(out[0, 0, :, 0], [15.0, 0.0], atol=1e-5)


def test_scale_intrinsics_halves_focal_and_centre_per_level():
    K = jnp.array([[[100.0, 0.0, 64.0], [0.0, 90.0, 32.0], [0.0, 0.0, 1.0]]])
    np.testing.assert_allclose(
        np.asarray(geometry.scale_intrinsics(K, 2))[0],
        [[25.0, 0.0, 16.0], [0.0, 22.5, 8.0], [0.0, 0.0, 1.0]],
    )


def test_rot_from_axisangle_quarter_turn_about_z():
    R = np.asarray(geometry.rot_from_axisangle(jnp.array([[0.0, 0.0, np.pi / 2]])))[0]
    np.testing.assert_allclose(R[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(R[3], [0, 0, 0, 1])
    # And a generic rotation against scipy's rotation vector.
    vec = np.array([0.3, -0.5, 0.2])
    R = np.asarray(geometry.rot_from_axisangle(jnp.asarray(vec[None], jnp.float32)))[0, :3, :3]
    np.testing.assert_allclose(R, Rotation.from_rotvec(vec).as_matrix(), atol=1e-6)
    # A zero rotation vector is the identity, not NaN.
    np.testing.assert_allclose(
        np.asarray(geometry.rot_from_axisangle(jnp.zeros((1, 3))))[0], np.eye(4), atol=1e-7
    )
    # ... and has a finite gradient there (d R / d v at 0 is the cross-product matrix).
    grad = jax.jacobian(lambda v: geometry.rot_from_axisangle(v)[0, 1, 0])(jnp.zeros((1, 3)))
    np.testing.assert_allclose(np.asarray(grad), [[0.0, 0.0, 1.0]], atol=1e-6)


def test_inverse_transformation_composes_to_identity():
    rng = np.random.default_rng(1)
    aa = jnp.asarray(rng.normal(size=(3, 3)) * 0.3, jnp.float32)
    t = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
    M = geometry.transformation_from_parameters(aa, t)
    M_inv = geometry.transformation_from_parameters(aa, t, invert=True)
    eye = np.broadcast_to(np.eye(4), (3, 4, 4))
    np.testing.assert_allclose(np.asarray(M @ M_inv), eye, atol=1e-5)
    np.testing.assert_allclose(np.asarray(M_inv @ M), eye, atol=1e-5)
    # M = Trans(t) · R: the rotation block is R and the translation column is t.
    np.testing.assert_allclose(np.asarray(M[:, :3, 3]), np.asarray(t), atol=1e-6)


def _warp_error(frames, depths, K, poses, T):
    """Mean reprojection error of the source (frame 2) warped into the target (frame 1), over
    pixels whose true 3-D point is inside the source image, and that visibility mask."""
    h, w = depths.shape[1:]
    Kj = jnp.asarray(K)[None]
    warped = geometry.warp(
        jnp.asarray(frames[2:3]),
        jnp.asarray(depths[1:2]),
        Kj,
        jnp.linalg.inv(Kj),
        jnp.asarray(T, jnp.float32)[None],
    )
    # Visibility from the TRUE geometry, so both poses are scored on the same pixels.
    T_true = scene.relative_pose(poses[1], poses[2])
    grid = geometry.project(
        geometry.backproject(jnp.asarray(depths[1:2]), jnp.linalg.inv(Kj)),
        Kj,
        jnp.asarray(T_true, jnp.float32)[None],
    )
    visible = np.all(np.abs(np.asarray(grid)) < 0.98, axis=-1)[0]
    err = np.asarray(reprojection_loss(warped, jnp.asarray(frames[1:2]), 0.85))[0]
    return float(err[visible].mean()), visible


def test_warping_with_true_depth_and_pose_reproduces_the_target():
    """Physics: a point seen from two poses has one colour; warping with the true depth and the
    true relative pose therefore rebuilds the target where the point is visible in both."""
    rng = np.random.default_rng(3)
    frames, depths, K, poses = scene.forward_triple(rng, 48, 64, step=0.4)
    # Add a sideways turn so that rotation and translation both matter.
    poses[2] = poses[2] @ scene.pose(np.array([0.1, -0.05, 0.0]), yaw=0.08)
    frames[2], depths[2] = scene.render(poses[2], K, 48, 64)
    T_true = scene.relative_pose(poses[1], poses[2])
    err_true, visible = _warp_error(frames, depths, K, poses, T_true)
    assert visible.mean() > 0.5
    identity_err = float(
        np.asarray(reprojection_loss(jnp.asarray(frames[2]), jnp.asarray(frames[1]), 0.85)).mean()
    )
    assert err_true < 0.01, err_true
    # A wrong pose (20 cm off sideways, or 3° more yaw) does not reproduce it.
    for wrong in (scene.pose(np.array([0.2, 0.0, 0.0])), scene.pose(np.zeros(3), yaw=0.05)):
        err_wrong, _ = _warp_error(frames, depths, K, poses, wrong @ T_true)
        assert err_wrong > 5 * err_true and err_wrong > 0.03, (err_wrong, err_true)
    assert identity_err > 5 * err_true


def test_warping_simulator_frames_with_recorded_depth_and_poses(tmp_path):
    """The same physics on the simulator's own files: a BV1 session's PNG frames, its depth .npy
    (millimetres, with sensor holes) and its poses.json. Warping frame t+20 (the paper's triple
    offset) into frame t with the
    recorded depth of t and the relative pose of the two recorded poses reproduces frame t up to
    PNG rounding and interpolation; a pose 15 cm or 2° off does not. (At 192×320 a pixel is
    smaller than the textures' finest period; at 48×80 the unfiltered renderer aliases and no
    warp can match.)"""
    import csv
    import os

    from PIL import Image

    from tfds_batvision import simulate

    h, w = 192, 320
    root = simulate.simulate_dataset(
        "bv1",
        str(tmp_path / "bv1"),
        1,
        seed=7,
        height=h,
        width=w,
        frames_per_scene=21,
        split_fractions=(1, 0, 0),
        progress=False,
    )
    with open(os.path.join(root, "train.csv")) as f:
        rows = list(csv.DictReader(f))
    K, poses = simulate.load_bv1_geometry(root, rows[0]["session"])
    target, source = rows[0], rows[20]
    frames = [
        np.asarray(Image.open(os.path.join(root, r["camera path left"])), np.float32) / 255
        for r in (target, source)
    ]
    depth_mm = np.load(os.path.join(root, target["depth path"]))
    valid = np.isfinite(depth_mm) & (depth_mm > 0)
    depth = np.where(valid, depth_mm, 1000.0) / 1000.0  # holes get any depth; masked below
    stem = lambda r: os.path.splitext(os.path.basename(r["camera path left"]))[0]  # noqa: E731
    T_true = np.linalg.inv(poses[stem(source)]) @ poses[stem(target)]  # target cam -> source cam
    assert np.linalg.norm(T_true[:3, 3]) > 0.1  # the rig moved between the two frames

    Kj = jnp.asarray(K, jnp.float32)[None]
    inv_K = jnp.linalg.inv(Kj)
    points = geometry.backproject(jnp.asarray(depth, jnp.float32)[None], inv_K)
    grid = geometry.project(points, Kj, jnp.asarray(T_true, jnp.float32)[None])
    visible = np.asarray(valid & np.all(np.abs(np.asarray(grid)[0]) < 0.98, axis=-1))
    assert visible.mean() > 0.5

    def error(T):
        warped = geometry.warp(
            jnp.asarray(frames[1])[None],
            jnp.asarray(depth, jnp.float32)[None],
            Kj,
            inv_K,
            jnp.asarray(T, jnp.float32)[None],
        )
        err = np.asarray(reprojection_loss(warped, jnp.asarray(frames[0])[None], 0.85))[0]
        return float(np.median(err[visible])), float(err[visible].mean())

    med_true, mean_true = error(T_true)
    identity = float(
        np.asarray(
            reprojection_loss(jnp.asarray(frames[1])[None], jnp.asarray(frames[0])[None], 0.85)
        )[0][visible].mean()
    )
    assert med_true < 0.005 and mean_true < 0.03, (med_true, mean_true)
    assert identity > 3 * mean_true, (identity, mean_true)
    for wrong in (scene.pose(np.array([0.15, 0.0, 0.0])), scene.pose(np.zeros(3), yaw=0.035)):
        _, mean_wrong = error(wrong @ T_true)
        assert mean_wrong > 3 * mean_true, (mean_wrong, mean_true)
