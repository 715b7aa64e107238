"""The relative-depth Task: conventions of the loss against the analytic scene, training,
inference at any resolution, and config validation."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import synthetic_scene as scene
import train_toy
from cpu_devices import xla_flags
from scipy.spatial.transform import Rotation

from avs_jax import geometry
from avs_jax.config_files import load_config_module
from avs_jax.train.pose_metrics import pose_errors
from avs_jax.train.relative_task import RelativeDepthTask, relative_losses
from avs_jax.train.state import data_mesh, init_variables

monodepth2 = load_config_module("monodepth2")
litemono = load_config_module("litemono")


def _pose_params(M):
    """(axisangle, translation) whose Trans(t)·R is the 4×4 `M`."""
    return Rotation.from_matrix(M[:3, :3]).as_rotvec(), M[:3, 3]


def _true_disp(depth, loss):
    """Sigmoid disparity that `disp_to_depth` turns into `depth`."""
    return (1 / depth - 1 / loss.max_depth) / (1 / loss.min_depth - 1 / loss.max_depth)


def test_loss_is_near_zero_with_true_depth_and_true_motion_in_pose_net_order():
    """With the scene's true depth and the motions the pose net should output for the pairs
    (−1, 0) and (0, +1) (each mapping the first frame's points to the second's), the Task's loss
    is near zero; the same motions used the other way round are not."""
    loss_cfg = monodepth2.get_config("tiny").loss
    loss_cfg.automask = False
    frames, depths, K, poses = scene.forward_triple(np.random.default_rng(4), 48, 64)
    motions = [scene.relative_pose(poses[0], poses[1]), scene.relative_pose(poses[1], poses[2])]
    params = [_pose_params(M) for M in motions]
    axisangle = jnp.asarray(np.stack([p[0] for p in params])[:, None], jnp.float32)  # [2, 1, 3]
    translation = jnp.asarray(np.stack([p[1] for p in params])[:, None], jnp.float32)
    disp = jnp.asarray(_true_disp(depths[1], loss_cfg)[None, :, :, None], jnp.float32)
    args = (jnp.asarray(frames[None]), jnp.asarray(K[None]), None, loss_cfg)
    right, metrics = relative_losses([disp], axisangle, translation, *args)
    wrong, _ = relative_losses([disp], -axisangle, -translation, *args)
    identity = float(jnp.mean(jnp.abs(frames[0] - frames[1])))
    assert float(metrics["photometric"]) < 0.02, float(metrics["photometric"])
    assert float(wrong) > 3 * float(right) and identity > 3 * float(right)


def test_loss_matches_upstream_monodepth2_trainer():
    """Monodepth2's own Trainer.generate_images_pred + compute_losses on the same disparities,
    motions, frames and pyramid (tests/fixtures/monodepth2_loss.npz, tools/make_loss_fixture.py;
    grid_sample with align_corners=True, no tie-break noise): the total, its photometric and
    smoothness parts and the automask fraction agree."""
    fx = np.load(Path(__file__).parent / "fixtures" / "monodepth2_loss.npz")
    loss_cfg = monodepth2.get_config("").loss  # the paper's: 0.1-100, SSIM 0.85, 1e-3, automask
    scales = range(4)
    total, metrics = relative_losses(
        [jnp.asarray(fx[f"disp_{s}"]) for s in scales],
        jnp.asarray(fx["axisangle"]),
        jnp.asarray(fx["translation"]),
        jnp.asarray(fx["frames"]),
        jnp.asarray(fx["intrinsics"]),
        None,
        loss_cfg,
        target_pyramid=[jnp.asarray(fx[f"pyramid_{s}"]) for s in scales],
    )
    np.testing.assert_allclose(float(total), fx["loss"], rtol=1e-4)
    np.testing.assert_allclose(float(metrics["photometric"]), fx["photometric"], rtol=1e-4)
    np.testing.assert_allclose(float(metrics["smoothness"]), fx["smoothness"], rtol=1e-4)
    np.testing.assert_allclose(
        float(metrics["automask_fraction"]), fx["automask_fraction"], atol=2e-3
    )


def _random_c2w(rng, n):
    """n random camera-to-world poses [n, 4, 4]."""
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = Rotation.random(n, random_state=int(rng.integers(1 << 30))).as_matrix()
    out[:, :3, 3] = rng.normal(size=(n, 3))
    return out


def test_pose_errors_against_known_rotations_and_directions():
    """Zero for the true motions of the pairs (−1, 0), (0, +1) at any translation scale; the
    known angle for a known extra rotation and a translation turned by a known angle; samples
    without poses are left out (NaN when none has one)."""
    rng = np.random.default_rng(0)
    b = 3
    poses = np.stack([_random_c2w(rng, 3) for _ in range(b)])  # [B, 3, 4, 4]
    motions = np.stack(
        [[scene.relative_pose(p[0], p[1]), scene.relative_pose(p[1], p[2])] for p in poses], axis=1
    )  # [2, B, 4, 4]: first camera -> second
    aa = np.stack([[Rotation.from_matrix(m[:3, :3]).as_rotvec() for m in pair] for pair in motions])
    t = motions[..., :3, 3]
    has = jnp.ones(b, bool)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    exact = pose_errors(f32(aa), f32(0.01 * t), f32(poses), has)
    assert float(exact["pose_rotation_error_deg"]) < 0.1
    assert float(exact["pose_translation_angle_deg"]) < 0.1
    # Swapping the pair order (the inverse motions) is not the truth.
    swapped = pose_errors(f32(-aa), f32(-t), f32(poses), has)
    assert float(swapped["pose_translation_angle_deg"]) > 10
    # R_pred = R_true · R_x(5°): the error is 5°; t turned by 30° about an axis ⟂ t: 30°.
    extra = Rotation.from_euler("x", 5, degrees=True)
    aa_off = np.stack(
        [[(Rotation.from_rotvec(v) * extra).as_rotvec() for v in pair] for pair in aa]
    )
    axis = np.cross(t, rng.normal(size=t.shape))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    t_off = np.stack(
        [
            [Rotation.from_rotvec(np.radians(30) * a).apply(v) for a, v in zip(ax, tt)]
            for ax, tt in zip(axis, t)
        ]
    )
    off = pose_errors(f32(aa_off), f32(t_off), f32(poses), has)
    np.testing.assert_allclose(float(off["pose_rotation_error_deg"]), 5.0, atol=0.05)
    np.testing.assert_allclose(float(off["pose_translation_angle_deg"]), 30.0, atol=0.05)
    # Sample 0 wrong and without a pose: the mean is over samples 1 and 2 only.
    aa_mixed = aa.copy()
    aa_mixed[:, 0] = aa_off[:, 0]
    mixed = pose_errors(f32(aa_mixed), f32(t), f32(poses), jnp.array([False, True, True]))
    assert float(mixed["pose_rotation_error_deg"]) < 0.1
    assert float(mixed["weight/pose_rotation_error_deg"]) == 4  # 2 samples x 2 pairs
    none = pose_errors(f32(aa), f32(t), f32(poses), jnp.zeros(b, bool))
    assert np.isnan(float(none["pose_rotation_error_deg"]))
    assert float(none["weight/pose_translation_angle_deg"]) == 0


def _init(task, batch):
    """The task's variables as training initialises them (jitted at XLA:CPU level 1: ~8 s on 2
    cores; run op by op, the DepthNet and PoseNet init took ~48 s)."""
    return init_variables(task, jax.random.key(0), batch, data_mesh())


def _scene_batch(n, h, w, seed):
    triples = [scene.forward_triple(np.random.default_rng(seed + i), h, w) for i in range(n)]
    return (
        {
            "frames": np.stack([t[0] for t in triples]),
            "intrinsics": np.stack([t[2] for t in triples]),
        },
        np.stack([t[1][1] for t in triples]),
    )


def test_predict_relative_at_any_resolution():
    config = litemono.get_config("tiny")
    task = RelativeDepthTask(config)
    batch, _ = _scene_batch(1, 32, 48, seed=20)
    variables = _init(task, batch)
    image = jnp.asarray(batch["frames"][:, 1])
    # Jitted: op by op, the first prediction took ~17 s on 2 cores (each op compiled alone).
    predict = jax.jit(task.predict_relative, static_argnames="out_size")
    native = np.asarray(predict(variables, image))
    depth = jax.jit(lambda v, x: task.model.apply(v, x, False, method=type(task.model).depth))
    disp0 = depth(variables, image)[0]
    _, expected = geometry.disp_to_depth(disp0[..., 0], 0.1, 100.0)
    np.testing.assert_allclose(native, np.asarray(expected), rtol=1e-5)
    assert 0.1 <= native.min() and native.max() <= 100.0
    big = np.asarray(predict(variables, image, out_size=(72, 90)))
    assert big.shape == (1, 72, 90)
    # Resizing happens on the disparity, so the depth range stays within the native one.
    assert native.min() - 1e-4 <= big.min() and big.max() <= native.max() + 1e-4
    # The evaluation's predictor resizes the disparity (half-pixel) to the ground truth's size,
    # then inverts it (Monodepth2's order), not the depth (align_corners) afterwards.
    from avs_jax.evaluation.evaluate import relative_predict_fn
    from avs_jax.metrics import resize_to
    from avs_jax.models.layers import resize_bilinear

    evaluated = np.asarray(
        relative_predict_fn(task, variables)({"image": image, "out_size": (72, 90)})
    )
    disp_big = resize_bilinear(disp0, (72, 90), align_corners=False)[..., 0]
    np.testing.assert_allclose(
        evaluated, 1.0 / (0.01 + (10.0 - 0.01) * np.asarray(disp_big)), rtol=1e-5
    )
    depth_resized = np.asarray(resize_to(jnp.asarray(native), (72, 90)))
    assert np.abs(evaluated - depth_resized).max() > 1e-3 * native.max()


def test_validation_leaves_a_batchs_padded_rows_out():
    """The pipeline pads a short last validation batch with zero rows (`valid_example` False),
    whose zero intrinsics have no inverse: the loss terms used to turn NaN for the whole set (and
    with them the paper config's best checkpoint, ranked by the loss). A padded row now counts
    for nothing: the metrics equal those of the real row alone, with a weight of one row."""
    from avs_jax.train.loop import _weighted_mean
    from avs_jax.train.relative_task import LOSS_METRICS

    task = RelativeDepthTask(monodepth2.get_config("tiny"))
    batch, _ = _scene_batch(2, 32, 64, seed=30)
    variables = _init(task, batch)
    metrics = jax.jit(task.eval_metrics)
    alone = {"frames": batch["frames"][:1], "intrinsics": batch["intrinsics"][:1]}
    padded = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in alone.items()}
    real = metrics(variables["params"], {"batch_stats": variables["batch_stats"]}, alone)
    pad = metrics(
        variables["params"],
        {"batch_stats": variables["batch_stats"]},
        {**padded, "valid_example": np.array([True, False])},
    )
    for k in LOSS_METRICS:
        assert np.isfinite(float(pad[k])), k
        np.testing.assert_allclose(float(pad[k]), float(real[k]), rtol=1e-5, err_msg=k)
        assert float(pad["weight/" + k]) == 1.0
    # Two real rows and a batch of padding only (the last of a multi-host split): the set's mean
    # is the mean of the real rows.
    both = {**batch, "valid_example": np.array([True, True])}
    two = metrics(variables["params"], {"batch_stats": variables["batch_stats"]}, both)
    empty = {**{k: np.zeros_like(v) for k, v in batch.items()}, "valid_example": np.zeros(2, bool)}
    none = metrics(variables["params"], {"batch_stats": variables["batch_stats"]}, empty)
    assert all(float(none["weight/" + k]) == 0 for k in LOSS_METRICS)
    records = [(2, jax.device_get(two)), (2, jax.device_get(none))]
    set_mean = _weighted_mean(records)
    for k in LOSS_METRICS:
        np.testing.assert_allclose(set_mean[k], float(two[k]), rtol=1e-6, err_msg=k)


def test_configs_and_scale_validation():
    for module, name, n_scales in ((monodepth2, "monodepth2", 4), (litemono, "lite", 3)):
        paper = module.get_config("")
        assert paper.model.name == name and len(paper.model.scales) == n_scales
        assert paper.data.image_size == (192, 640) and paper.data.batch_size == 12
        assert paper.loss.ssim_weight == 0.85 and paper.loss.smoothness_weight == 1e-3
        assert (paper.loss.min_depth, paper.loss.max_depth) == (0.1, 100.0)
        assert paper.train.learning_rate == 1e-4 and paper.train.lr_decay_epochs == 15
        assert paper.train.num_epochs == 20 and paper.train.lr_decay_factor == 0.1
    # The config links the loss scales to the model's; a config that breaks the link is refused.
    config = ml_collections.ConfigDict(monodepth2.get_config("tiny").to_dict())
    config.loss.scales = (0, 1, 2)
    with pytest.raises(ValueError, match="config.loss.scales"):
        RelativeDepthTask(config)
    with pytest.raises(ValueError, match="unknown argument"):
        monodepth2.get_config("huge")
    labels = jax.tree.leaves(
        RelativeDepthTask(litemono.get_config("tiny")).param_labels(
            {"a": jnp.zeros(2), "b": {"c": jnp.zeros(3)}}
        )
    )
    assert labels == ["default", "default"]


_MULTI_DEVICE_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import synthetic_scene as scene
from avs_jax.config_files import load_config
from avs_jax.train.relative_task import RelativeDepthTask
from avs_jax.train.state import init_compiler_options
assert jax.device_count() == 4
task = RelativeDepthTask(load_config("monodepth2", "tiny"))
triples = [scene.forward_triple(np.random.default_rng(i), 32, 64) for i in range(4)]
batch = {"frames": np.stack([t[0] for t in triples]), "intrinsics": np.stack([t[2] for t in triples])}
init = jax.jit(task.init_variables, compiler_options=init_compiler_options())
v = init(jax.random.key(0), batch)
state = {"batch_stats": v["batch_stats"]}
grad_fn = jax.value_and_grad(task.loss_and_metrics, has_aux=True)
def run(b):
    # Both at the init's XLA:CPU level 1 (64 -> 55 s alone on 2 cores): what is compared is the
    # partitioning over devices, not the backend's optimisation level.
    (loss, (new_state, _)), grads = jax.jit(grad_fn, static_argnums=4,
                                            compiler_options=init_compiler_options())(
        v["params"], state, b, jax.random.key(1), True)
    return float(loss), jax.tree.map(np.asarray, (grads, new_state))
single = run(jax.device_put(batch, jax.devices()[0]))
# Auto axes: plain jit with shardings, XLA partitions.
mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
sharded = run(jax.device_put(batch, NamedSharding(mesh, P("data"))))
assert abs(single[0] - sharded[0]) < 1e-5, (single[0], sharded[0])
for a, b in zip(jax.tree.leaves(single[1]), jax.tree.leaves(sharded[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
print("OK", single[0], sharded[0])
"""


def test_loss_and_gradients_same_on_one_and_four_devices():
    """Data-parallel: the batch split over 4 forced CPU devices gives the loss, gradients and
    BatchNorm statistics of one device (global statistics, sharding-independent noise)."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, XLA_FLAGS=xla_flags(4), JAX_PLATFORMS="cpu", PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE_SCRIPT, str(root / "tests")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_tiny_model_on_simulated_bv1_beats_constant_depth_on_held_out_room(tmp_path):
    """Issue must-show: a tiny DepthNet + PoseNet trained on simulated BV1 sequences (the
    simulator's PNG frames and intrinsics.json, triples t-20, t, t+20 as the paper) lowers the
    photometric loss by at least 20%, and on the frames of a held-out room its median-scaled
    depth has a lower Abs Rel than the best constant depth of the same scale (each frame's
    ground-truth median everywhere), on average and on most frames."""
    import csv
    import os

    from PIL import Image

    from tfds_batvision import simulate

    h, w = 64, 96
    root = simulate.simulate_dataset(
        "bv1",
        str(tmp_path / "bv1"),
        4,
        seed=0,
        height=h,
        width=w,
        frames_per_scene=50,
        split_fractions=(1, 0, 0),
        max_room=12.0,
        progress=False,
    )
    with open(os.path.join(root, "train.csv")) as f:
        rows = list(csv.DictReader(f))
    K, _ = simulate.load_bv1_geometry(root, rows[0]["session"])
    sessions: dict[str, list] = {}
    for r in rows:  # one room per session here; rows are time-ordered
        frame = np.asarray(Image.open(os.path.join(root, r["camera path left"])), np.float32)
        depth = np.load(os.path.join(root, r["depth path"])) / 1000.0  # mm, NaN/inf/0 holes
        sessions.setdefault(r["session"], []).append((frame / 255.0, depth))
    names = sorted(sessions)
    train_rooms, held_out = names[:-1], names[-1]
    targets = [(s, t) for s in train_rooms for t in range(20, 30)]

    def batch_of(picks):
        frames = np.stack(
            [np.stack([sessions[s][t + o][0] for o in (-20, 0, 20)]) for s, t in picks]
        )
        return {
            "frames": frames,
            "intrinsics": np.broadcast_to(K.astype(np.float32), (len(picks), 3, 3)).copy(),
        }

    config = monodepth2.get_config("tiny")
    config.loss.min_depth, config.loss.max_depth = 0.01, 10.0  # as configs/quickstart.py
    task = RelativeDepthTask(config)
    variables = _init(task, batch_of(targets[:4]))
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    opt = optax.adam(1e-3)
    opt_state = train_toy.optimizer_state(opt, params)
    step = train_toy.plain_adam_step(task, opt)

    rng = np.random.default_rng(0)
    losses = []
    for i in range(150):
        picks = [targets[j] for j in rng.choice(len(targets), 4, replace=False)]
        params, state, opt_state, _, metrics = step(
            params, state, opt_state, batch_of(picks), jax.random.key(i)
        )
        losses.append(float(metrics["photometric"]))
    # Measured 0.54-0.68 of the start over seeds 0-2 with XLA's AVX-512 and AVX2 code: 0.8 keeps
    # a margin that a last-bit change of the chaotic 150 steps does not eat.
    assert np.mean(losses[-10:]) <= 0.8 * np.mean(losses[:5]), (losses[:5], losses[-10:])

    predict = jax.jit(task.predict_relative)
    ours, constant = [], []
    for frame, depth in sessions[held_out][::3]:
        pred = np.asarray(predict({"params": params, **state}, jnp.asarray(frame)[None]))[0]
        ok = np.isfinite(depth) & (depth > 0)
        gt, rel = depth[ok], pred[ok]
        ours.append(np.mean(np.abs(rel * np.median(gt) / np.median(rel) - gt) / gt))
        constant.append(np.mean(np.abs(np.median(gt) - gt) / gt))
    ours, constant = np.array(ours), np.array(constant)
    assert ours.mean() < constant.mean(), (ours.mean(), constant.mean())
    assert (ours < constant).mean() >= 0.75, (ours, constant)
