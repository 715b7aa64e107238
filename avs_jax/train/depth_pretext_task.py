"""A pretext for the relative DepthNet: depth up to scale, supervised on BV2-like samples.

The paper's relative model (Monodepth2) starts from an ImageNet-pretrained ResNet-18 encoder and
a random decoder; the quickstart's tiny DepthNet has no such weights. This task makes their
analog from simulated rooms the quickstart never sees (avs_jax/sim_pretrain.py): the relative
stage's DepthNet trained on (image, depth) pairs with a per-image scale-invariant log loss, so
that it learns the room's structure and no scale (a relative model cannot know the scale).

Loss (Eigen et al. 2014 with lambda = 1, per image): at every output scale the disparity is
upsampled (bilinear) to the depth's size, turned into depth by `disp_to_depth` as the relative
stage does, and `g = log(pred) − log(gt)` over the image's valid pixels;
`loss = alpha · sqrt(mean over images of Var(g))`, averaged over the scales. Multiplying one
image's prediction by any constant leaves it unchanged.

Batches: the stage-1 host form (avs_jax/data/input_pipeline.py, `config.data.device_prep=False`):
`image` [B, H, W, 3] float in [0, 1] (augmented by the pipeline in training), `depth` [B, H, W]
metres (0 = invalid); an `echo` entry is ignored. The variables are `{"depth_net": ...}`, the
relative stage's names, so that `config.init_from` of the relative stage reads them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from avs_jax import geometry
from avs_jax.data.device_prep import as_unit_float
from avs_jax.errors import BadInputError
from avs_jax.losses.silog import LOG_EPS
from avs_jax.metrics import batch_means
from avs_jax.models.layers import resize_bilinear
from avs_jax.models.relative_model import build_depth_net
from avs_jax.scaling import scale_factor_median
from avs_jax.train.tasks import WEIGHT_PREFIX

Array = jax.Array
PyTree = Any

# Predictions are clipped to [EVAL_MIN_DEPTH, max_depth] before the metrics, as the relative
# stage's validation does.
EVAL_MIN_DEPTH = 1e-3


class DepthOnly(nn.Module):
    """The relative stage's DepthNet under the relative model's name, `depth_net`."""

    depth_net: nn.Module

    def __call__(self, image: Array, train: bool) -> list[Array]:
        """image `[B, H, W, 3]` in [0, 1] → disparities `[B, H/2^s, W/2^s, 1]`, scale 0 first."""
        return self.depth_net(image, train)


def scale_invariant_log_loss(pred: Array, target: Array, alpha: float = 10.0) -> Array:
    """alpha · sqrt(mean over images of the biased Var(log pred − log target)), fp32 scalar.

    pred, target `[B, H, W]` (target 0 = invalid). An image without valid pixels adds 0; each
    image's variance is over its own pixels, so a per-image factor on `pred` changes nothing.
    """
    mask = target > 0
    m = mask.astype(jnp.float32)
    g = jnp.where(mask, jnp.log(pred + LOG_EPS) - jnp.log(target + LOG_EPS), 0.0)
    n = jnp.maximum(m.sum(axis=(1, 2)), 1.0)
    mean = g.sum(axis=(1, 2)) / n
    var = (m * (g - mean[:, None, None]) ** 2).sum(axis=(1, 2)) / n
    return alpha * jnp.sqrt(jnp.mean(var) + 1e-12)


class DepthPretextTask:
    """The relative DepthNet (`config.model`, as the relative stage's) supervised up to scale.

    Args:
      config: reads `config.model` (avs_jax.models.relative_model.relative_model_config),
        `config.loss.min_depth` / `max_depth` (disp_to_depth's range, as the relative stage's),
        `config.loss.alpha` (default 10) and `config.data.max_depth` (the evaluation cap).
    """

    def __init__(self, config: ml_collections.ConfigDict):
        if config.data.get("device_prep", False):
            raise BadInputError(
                "config.task='depth_pretext' reads host batches: set config.data.device_prep=False"
            )
        self.model = DepthOnly(build_depth_net(config.model))
        self.scales = tuple(config.model.scales)
        self.min_depth = float(config.loss.min_depth)
        self.max_depth = float(config.loss.max_depth)
        self.alpha = float(config.loss.get("alpha", 10.0))
        self.eval_max_depth = float(config.data.max_depth)

    def init_variables(self, rng: Array, batch: dict[str, Any]) -> dict[str, PyTree]:
        """{"params", "batch_stats"} of the DepthNet, shaped by `batch["image"]`."""
        image = as_unit_float(jnp.asarray(batch["image"])).astype(jnp.float32)
        variables = self.model.init(rng, image, train=False)
        return {"params": variables["params"], "batch_stats": variables["batch_stats"]}

    def _depths(self, disps: list[Array], size: tuple[int, int]) -> list[Array]:
        """Each scale's disparity `[B, h, w, 1]` → depth `[B, *size]` (upsampled first)."""
        out = []
        for disp in disps:
            disp = resize_bilinear(disp.astype(jnp.float32), size, align_corners=False)
            out.append(geometry.disp_to_depth(disp[..., 0], self.min_depth, self.max_depth)[1])
        return out

    def _loss(self, disps: list[Array], depth: Array) -> tuple[Array, dict[str, Array], Array]:
        """(the scale-invariant loss averaged over the scales, {"si_log": scale 0's}, scale 0's
        depth `[B, H, W]`)."""
        depths = self._depths(disps, depth.shape[1:3])
        losses = [scale_invariant_log_loss(d, depth, self.alpha) for d in depths]
        return sum(losses) / len(losses), {"si_log": losses[0]}, depths[0]

    def loss_and_metrics(
        self,
        params: PyTree,
        model_state: dict[str, PyTree],
        batch: dict[str, Any],
        rng: Array | None,
        train: bool,
    ) -> tuple[Array, tuple[dict[str, PyTree], dict[str, Array]]]:
        """The scale-invariant loss averaged over the scales; BatchNorm updates when `train`."""
        del rng  # no dropout; the pipeline augmented the batch
        image = as_unit_float(jnp.asarray(batch["image"]))
        depth = jnp.asarray(batch["depth"], jnp.float32)
        variables = {"params": params, **model_state}
        if train:
            disps, new_state = self.model.apply(
                variables, image, train=True, mutable=["batch_stats"]
            )
            new_state = dict(new_state)
        else:
            disps, new_state = self.model.apply(variables, image, train=False), model_state
        loss, metrics, _ = self._loss(disps, depth)
        return loss, (new_state, metrics)

    def param_labels(self, params: PyTree) -> PyTree:
        """One learning rate for every parameter."""
        return jax.tree.map(lambda _: "default", params)

    def eval_metrics(
        self, params: PyTree, model_state: dict[str, PyTree], batch: dict[str, Any]
    ) -> dict[str, Array]:
        """The loss, and the tables' metrics of the scale-0 depth median-scaled per image to the
        ground truth (how the relative stage's depth is judged)."""
        image = as_unit_float(jnp.asarray(batch["image"]))
        gt = jnp.asarray(batch["depth"], jnp.float32)
        disps = self.model.apply({"params": params, **model_state}, image, train=False)
        loss, metrics, pred = self._loss(disps, gt)  # one forward pass for loss and metrics
        scaled = pred * scale_factor_median(pred, gt, gt > 0)[:, None, None]
        means, count = batch_means(scaled, gt, EVAL_MIN_DEPTH, self.eval_max_depth)
        return {"loss": loss, **metrics, **means, **{WEIGHT_PREFIX + k: count for k in means}}
