"""Relative-depth pretraining of the DepthNet on images with depth (a stand-in for pretrained weights).

The paper's relative models do not start from scratch: Monodepth2, MonoViT and Lite-Mono start
from ImageNet encoders, and the paper's point (Sec. 3.2) is to scale *pretrained* relative models.
Where no weights file is at hand (the quickstart, which downloads nothing), this task gives the
DepthNet a start of the same kind from data the pipeline already has: the training images of
another dataset (BV2 in the quickstart; the relative stage then trains on BV1) with their depth,
under a loss that is blind to scale, so that what carries over is depth *structure* and not a
metric scale (MiDaS pretrains relative depth the same way, with a scale- and shift-invariant loss).

Loss, per output scale s (the disparity upsampled to the depth's size, bilinear, then
`disp_to_depth` as the relative stage does): per image, the variance of
`g = log(depth) − log(gt)` over its valid pixels (scale-invariant log error with lambda = 1,
Eigen et al. 2014), averaged over images and scales. Per image, because a relative model has a
free scale per image; lambda = 1, because any other value rewards one scale over another.

Batch: `image` [B, H, W, 3] in [0, 1], `depth` [B, H, W] metres (0 = invalid); `echo` is ignored.
Variables are the DepthNet's own ({"params", "batch_stats"} with `encoder`, `decoder`): the
relative stage takes them with `init_from=<this run's workdir>`, `init_from_target="depth_net"`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from avs_jax import geometry
from avs_jax.models.depthnet import build_depth_net
from avs_jax.models.layers import resize_bilinear
from avs_jax.train.relative_task import median_scaled_errors

Array = jax.Array
PyTree = Any


def per_image_log_variance(depth: Array, gt: Array) -> Array:
    """Mean over images of Var(log depth − log gt) over each image's valid pixels (gt > 0).

    depth, gt `[B, H, W]`; an image without valid pixels contributes 0. Invariant to multiplying
    any image's depth by a positive constant.
    """
    valid = gt > 0
    m = valid.astype(jnp.float32)
    g = jnp.where(valid, jnp.log(jnp.maximum(depth, 1e-7)) - jnp.log(jnp.where(valid, gt, 1.0)),
                  0.0)
    n = jnp.sum(m, axis=(1, 2))
    mean = jnp.sum(g, axis=(1, 2)) / jnp.maximum(n, 1.0)
    var = jnp.sum(m * (g - mean[:, None, None]) ** 2, axis=(1, 2)) / jnp.maximum(n, 1.0)
    return jnp.mean(var)


class DepthPretrainTask:
    """Task object (train-core protocol) for scale-invariant supervised DepthNet pretraining."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.loss_config = config.loss
        self.model = build_depth_net(config.model)

    def init_variables(self, rng: Array, batch: dict[str, Any]) -> dict[str, PyTree]:
        """{"params", "batch_stats"} of the DepthNet, shaped by `batch["image"]`."""
        variables = self.model.init(rng, jnp.asarray(batch["image"], jnp.float32), train=False)
        return {"params": variables["params"], "batch_stats": variables["batch_stats"]}

    def _depths(self, disps: list[Array], size: tuple[int, int]) -> Array:
        """Disparities per scale → depths `[S, B, H, W]` at `size`, as the relative stage has them."""
        full = jnp.stack([resize_bilinear(d.astype(jnp.float32), size, align_corners=False)
                          for d in disps])[..., 0]
        _, depth = geometry.disp_to_depth(full, self.loss_config.min_depth,
                                          self.loss_config.max_depth)
        return depth

    def loss_and_metrics(self, params: PyTree, model_state: dict[str, PyTree],
                         batch: dict[str, Any], rng: Array,
                         train: bool) -> tuple[Array, tuple[dict[str, PyTree], dict[str, Array]]]:
        """(loss fp32, (new model_state, metrics)): the mean per-image log variance over scales."""
        del rng
        gt = jnp.asarray(batch["depth"], jnp.float32)
        variables = {"params": params, **model_state}
        if train:
            disps, new_state = self.model.apply(variables, batch["image"], True,
                                                mutable=["batch_stats"])
            new_state = dict(new_state)
        else:
            disps, new_state = self.model.apply(variables, batch["image"], False), model_state
        depth = self._depths(disps, gt.shape[1:3])
        per_scale = jnp.stack([per_image_log_variance(d, gt) for d in depth])
        loss = jnp.mean(per_scale)
        metrics = {"loss": loss, "log_variance_scale0": per_scale[0],
                   "mean_depth": jnp.mean(depth[0])}
        return loss, (new_state, metrics)

    def param_labels(self, params: PyTree) -> PyTree:
        """One learning rate for the whole DepthNet."""
        return jax.tree.map(lambda _: "default", params)

    def eval_metrics(self, params: PyTree, model_state: dict[str, PyTree],
                     batch: dict[str, Any]) -> dict[str, Array]:
        """The loss, and Abs Rel and δ1 after per-image median scaling (as Table 2 scores R)."""
        _, (_, metrics) = self.loss_and_metrics(params, model_state, batch, None, train=False)
        gt = jnp.asarray(batch["depth"], jnp.float32)
        disps = self.model.apply({"params": params, **model_state}, batch["image"], False)
        metrics.update(median_scaled_errors(self._depths(disps[:1], gt.shape[1:3])[0], gt))
        return metrics
