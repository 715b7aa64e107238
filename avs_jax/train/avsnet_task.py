"""The stage-1 task (paper Sec. 3.3.1): AVS-Net trained with SILog on BV2, for the train core.

Implements the train-core task protocol (init_variables, loss_and_metrics, param_labels,
eval_metrics) plus `predict` for evaluation and `summary_images` for TensorBoard. Batches:
`image` [B, H, W, 3] in [0, 1], `echo` [B, H, W, 2] (ignored by the "rgb" variant), `depth`
[B, H, W] metres with 0 = invalid.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from avs_jax.losses.silog import silog_loss
from avs_jax.metrics import batch_means
from avs_jax.models.avsnet import AVSNet, validate_model_config
from avs_jax.models.layers import resize_bilinear
from avs_jax.train.summaries import depth_panels
from avs_jax.train.tasks import WEIGHT_PREFIX

Array = jax.Array

# Parameters under this path are MiDaS's pretrained encoder (transformer + reassemble, MiDaS's
# `pretrained`), which ZoeDepth trains at lr / encoder_lr_factor (10), relative position tables
# included (pos_enc_lr_factor 10). Everything else (MiDaS decoder, echo branch, attention,
# bins head) is "default".
ENCODER_PATH = ("midas", "encoder")


class AVSNetTask:
    """AVS-Net / Only-RGB / echo-only, supervised by SILog (alpha 10, beta 0.15).

    Args:
      config: the experiment config; reads `config.model` (see
        avs_jax.models.avsnet.default_model_config) and, when present, `config.loss.silog_alpha`
        and `config.loss.silog_beta`.
    """

    def __init__(self, config: ml_collections.ConfigDict):
        model_config = config.model
        validate_model_config(model_config)
        self.model_config = ml_collections.FrozenConfigDict(model_config)
        self.model = AVSNet(self.model_config)
        self.uses_echo = model_config.variant != "rgb"
        loss = config.get("loss", None)
        self.silog_alpha = float(loss.silog_alpha) if loss is not None else 10.0
        self.silog_beta = float(loss.silog_beta) if loss is not None else 0.15
        self._summary_depth = jax.jit(self._depth_at, static_argnums=3)

    def _echo(self, batch: dict) -> Array | None:
        return batch["echo"] if self.uses_echo else None

    def init_variables(self, rng: jax.Array, batch: dict) -> dict:
        """{"params": ..., "batch_stats": ...} ({} batch_stats for "rgb": no BatchNorm)."""
        variables = self.model.init(rng, batch["image"], self._echo(batch), train=False)
        # Only parameters and BatchNorm statistics are state; the Grad-CAM hooks' collections
        # ("perturbations") are zeros that inference does not need.
        variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
        variables.setdefault("batch_stats", {})
        return variables

    def _apply(
        self, params: Any, model_state: dict, image: Array, echo: Array | None, train: bool
    ) -> tuple[dict, dict]:
        variables = {"params": params, **model_state}
        mutable = [k for k, v in model_state.items() if v] if train else []
        if mutable:
            out, new_state = self.model.apply(variables, image, echo, train=True, mutable=mutable)
            return out, {**model_state, **new_state}
        return self.model.apply(variables, image, echo, train=train), model_state

    def loss_and_metrics(
        self, params: Any, model_state: dict, batch: dict, rng: jax.Array, train: bool
    ) -> tuple[Array, tuple[dict, dict]]:
        """SILog of metric_depth against batch["depth"] (valid = depth > 0); fp32 scalar.

        `rng` is unused: the network has no dropout or drop-path (ZoeDepth fine-tunes BEiT with
        drop_path 0).
        """
        del rng
        out, new_state = self._apply(params, model_state, batch["image"], self._echo(batch), train)
        depth = batch["depth"].astype(jnp.float32)
        loss = silog_loss(out["metric_depth"], depth, depth > 0, self.silog_alpha, self.silog_beta)
        return loss, (new_state, {"silog": loss})

    def param_labels(self, params: Any) -> Any:
        """ "encoder" for the MiDaS encoder (lr/10, docs/reference.md), "default" for everything else."""
        flat = traverse_util.flatten_dict(params)
        labels = {
            path: "encoder" if path[: len(ENCODER_PATH)] == ENCODER_PATH else "default"
            for path in flat
        }
        return traverse_util.unflatten_dict(labels)

    def predict(self, variables: dict, image: Array, echo: Array | None = None) -> Array:
        """Metric depth [B, H, W, 1] (metres) at the input resolution, eval mode."""
        return self.model.apply(variables, image, echo if self.uses_echo else None, train=False)[
            "metric_depth"
        ]

    def _depth_at(
        self, variables: dict, image: Array, echo: Array | None, size: tuple[int, int]
    ) -> Array:
        """Metric depth [B, *size] resized as `eval_metrics` resizes it."""
        pred = self.predict(variables, image, echo).astype(jnp.float32)
        return resize_bilinear(pred, size, align_corners=True)[..., 0]

    def summary_images(self, variables: dict, batch: dict) -> dict[str, np.ndarray]:
        """{"depth": uint8 [N, 2H, 2W, 3]}: per sample RGB | echo STFT over ground truth |
        prediction (avs_jax/train/summaries.py `depth_panels`), on the host.

        batch: host arrays `image` [N, H, W, 3], `echo` [N, H, W, 2], `depth` [N, H, W].
        """
        gt = np.asarray(batch["depth"], np.float32)
        echo = self._echo(batch)
        pred = self._summary_depth(variables, batch["image"], echo, tuple(gt.shape[1:3]))
        return {
            "depth": depth_panels(
                batch["image"], gt, np.asarray(pred), echo, self.model_config.max_depth
            )
        }

    def eval_metrics(self, params: Any, model_state: dict, batch: dict) -> dict[str, Array]:
        """SILog and the tables' metrics (avs_jax/metrics.py) against batch["depth"].

        The prediction is resized to the depth's size and clipped to the model's depth range,
        as the evaluation does; each metric comes with its image count for the set's mean.
        """
        depth = batch["depth"].astype(jnp.float32)
        pred = self.predict(
            {"params": params, **model_state}, batch["image"], self._echo(batch)
        ).astype(jnp.float32)
        pred = resize_bilinear(pred, depth.shape[1:3], align_corners=True)[..., 0]
        means, count = batch_means(
            pred, depth, self.model_config.min_depth, self.model_config.max_depth
        )
        metrics = {**means, **{WEIGHT_PREFIX + k: count for k in means}}
        metrics["silog"] = silog_loss(pred, depth, depth > 0, self.silog_alpha, self.silog_beta)
        return metrics
