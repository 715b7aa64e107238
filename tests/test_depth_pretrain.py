"""The DepthNet's scale-invariant pretraining task (avs_jax/train/depth_pretrain_task.py)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avs_jax import geometry
from avs_jax.models.depthnet import default_model_config
from avs_jax.train.depth_pretrain_task import DepthPretrainTask, per_image_log_variance


def test_per_image_log_variance_hand_case_ignores_invalid_pixels_and_per_image_scale():
    gt = np.array([[[1.0, 1.0, 0.0]], [[2.0, 4.0, 8.0]]], np.float32)  # [2, 1, 3]
    depth = np.array([[[1.0, np.e, 123.0]], [[2.0, 4.0, 8.0]]], np.float32)
    # Image 0: g = (0, 1) on its two valid pixels -> variance 1/4; image 1: g = 0 -> 0.
    np.testing.assert_allclose(per_image_log_variance(jnp.asarray(depth), jnp.asarray(gt)),
                               0.125, rtol=1e-6)
    # Any positive factor per image leaves it unchanged; a factor on one pixel does not.
    scaled = depth * np.array([7.0, 0.01], np.float32)[:, None, None]
    np.testing.assert_allclose(per_image_log_variance(jnp.asarray(scaled), jnp.asarray(gt)),
                               0.125, rtol=1e-5)
    depth[1, 0, 0] *= 2.0
    assert per_image_log_variance(jnp.asarray(depth), jnp.asarray(gt)) > 0.13


def _task():
    c = ml_collections.ConfigDict()
    c.model = default_model_config("monodepth2", "tiny")
    c.loss = ml_collections.ConfigDict(dict(min_depth=0.01, max_depth=10.0))
    return DepthPretrainTask(c)


def test_loss_is_the_per_image_log_variance_of_every_scale_upsampled():
    task = _task()
    rs = np.random.RandomState(0)
    batch = {"image": jnp.asarray(rs.rand(2, 32, 64, 3), jnp.float32),
             "depth": jnp.asarray(rs.uniform(0.5, 5.0, (2, 32, 64)) * (rs.rand(2, 32, 64) > 0.2),
                                  jnp.float32)}
    variables = task.init_variables(jax.random.PRNGKey(0), batch)
    loss, (_, metrics) = task.loss_and_metrics(variables["params"],
                                               {"batch_stats": variables["batch_stats"]}, batch,
                                               None, train=False)
    disps = task.model.apply(variables, batch["image"], False)
    expected = []
    for d in disps:  # by hand: upsample, disparity -> depth, per-image variance of the log error
        full = jax.image.resize(d, (2, 32, 64, 1), "linear")[..., 0]
        _, depth = geometry.disp_to_depth(full, 0.01, 10.0)
        per_image = []
        for b in range(2):
            valid = np.asarray(batch["depth"][b]) > 0
            g = np.log(np.asarray(depth[b])[valid]) - np.log(np.asarray(batch["depth"][b])[valid])
            per_image.append(np.var(g))
        expected.append(np.mean(per_image))
    assert len(disps) == 4
    np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-4)
    np.testing.assert_allclose(float(metrics["log_variance_scale0"]), expected[0], rtol=1e-4)
