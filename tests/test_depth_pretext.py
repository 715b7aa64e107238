"""The relative DepthNet's pretext task (avs_jax/train/depth_pretext_task.py): its loss is
invariant to each image's scale and nothing else, its weights fill the relative stage's
DepthNet by name, and its validation scores the median-scaled depth as the tables do."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax import geometry
from avs_jax import import_weights as iw
from avs_jax.config_files import load_config
from avs_jax.errors import BadInputError
from avs_jax.metrics import per_image_metrics
from avs_jax.train.depth_pretext_task import DepthPretextTask, scale_invariant_log_loss
from avs_jax.train.pretrained import load_pretrained
from avs_jax.train.relative_task import RelativeDepthTask


def _config():
    """The pretext's config as configs/sim_pretrain.py makes it."""
    return load_config("sim_pretrain").depthnet


def test_loss_by_hand():
    # Image 0: valid log-ratios log 2, log 2, log 4 (one pixel invalid): mean (4/3) log 2,
    # biased Var = (2/9) (log 2)^2. Image 1: prediction = truth, Var 0.
    pred = jnp.asarray([[[2.0, 2.0], [4.0, 7.0]], [[1.0, 3.0], [5.0, 2.0]]])
    gt = jnp.asarray([[[1.0, 1.0], [1.0, 0.0]], [[1.0, 3.0], [5.0, 2.0]]])
    want = 10.0 * np.sqrt((2.0 / 9.0) * np.log(2.0) ** 2 / 2.0)
    np.testing.assert_allclose(float(scale_invariant_log_loss(pred, gt)), want, rtol=1e-5)


def test_loss_ignores_each_images_scale_and_sees_structure():
    rng = np.random.default_rng(0)
    gt = jnp.asarray(rng.uniform(1.0, 8.0, (3, 8, 16)), jnp.float32)
    pred = jnp.asarray(rng.uniform(1.0, 8.0, (3, 8, 16)), jnp.float32)
    scales = jnp.asarray([0.1, 3.0, 40.0])[:, None, None]
    base = float(scale_invariant_log_loss(pred, gt))
    # A factor per image: float32 logs of values up to ~300 differ by a few ulps (~1e-7 relative).
    np.testing.assert_allclose(float(scale_invariant_log_loss(pred * scales, gt)), base, rtol=1e-5)
    assert float(scale_invariant_log_loss(gt * scales, gt)) < 1e-3 < base
    # One factor for the two halves of an image is no longer a per-image scale.
    halves = jnp.concatenate([pred[:, :, :8], 2.0 * pred[:, :, 8:]], axis=2)
    assert abs(float(scale_invariant_log_loss(halves, gt)) - base) > 0.1


def _batch(task_cfg, rng, n=2):
    h, w = task_cfg.data.image_size
    image = rng.uniform(0.0, 1.0, (n, h, w, 3)).astype(np.float32)
    depth = rng.uniform(0.5, 8.0, (n, h, w)).astype(np.float32)
    depth[:, :4] = 0.0  # invalid rows
    return {"image": jnp.asarray(image), "depth": jnp.asarray(depth)}


def test_weights_fill_the_relative_stages_depthnet_and_leave_its_pose_net(tmp_path):
    cfg = _config()
    task = DepthPretextTask(cfg)
    batch = _batch(cfg, np.random.default_rng(1))
    variables = jax.jit(task.init_variables)(jax.random.key(1), batch)
    path = iw.save_weights_npz(tmp_path / "depthnet.npz", variables)

    quick = load_config("quickstart").relative
    relative = RelativeDepthTask(quick)
    frames = jnp.stack([batch["image"]] * 3, axis=1)
    fresh = jax.jit(relative.init_variables)(jax.random.key(2), {"frames": frames})
    loaded = load_pretrained(str(path), fresh)
    for collection in ("params", "batch_stats"):
        got = jax.tree.leaves(loaded[collection]["depth_net"])
        want = jax.tree.leaves(variables[collection]["depth_net"])
        assert len(got) == len(want) > 0
        for a, b in zip(got, want):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(
            jax.tree.leaves(loaded[collection]["pose_net"]),
            jax.tree.leaves(fresh[collection]["pose_net"]),
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The relative stage's depth is then the pretext's depth.
    image = batch["image"]
    out = jax.jit(relative.predict_relative)(loaded, image)
    disp = task.model.apply(variables, image, train=False)[0][..., 0]
    want = geometry.disp_to_depth(disp, cfg.loss.min_depth, cfg.loss.max_depth)[1]
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-6)


def test_validation_scores_the_median_scaled_depth():
    cfg = _config()
    task = DepthPretextTask(cfg)
    batch = _batch(cfg, np.random.default_rng(3))
    variables = jax.jit(task.init_variables)(jax.random.key(3), batch)
    metrics = jax.jit(task.eval_metrics)(
        variables["params"], {"batch_stats": variables["batch_stats"]}, batch
    )
    disp = task.model.apply(variables, batch["image"], train=False)[0][..., 0]
    pred = np.asarray(geometry.disp_to_depth(disp, cfg.loss.min_depth, cfg.loss.max_depth)[1])
    gt = np.asarray(batch["depth"])
    scaled = np.stack([p * np.median(g[g > 0]) / np.median(p[g > 0]) for p, g in zip(pred, gt)])
    want = per_image_metrics(jnp.asarray(scaled), batch["depth"], 1e-3, cfg.data.max_depth)
    np.testing.assert_allclose(
        float(metrics["abs_rel"]), float(np.mean(want["abs_rel"])), rtol=1e-4
    )
    assert int(metrics["weight/abs_rel"]) == 2
    loss, _ = task.loss_and_metrics(
        variables["params"], {"batch_stats": variables["batch_stats"]}, batch, None, False
    )
    np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-6)


def test_raw_batches_are_refused_by_name():
    cfg = _config()
    cfg.data.device_prep = True
    with pytest.raises(BadInputError, match="device_prep=False"):
        DepthPretextTask(cfg)
