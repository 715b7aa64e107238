"""The stage-1 task (paper Sec. 3.3.1): AVS-Net trained with SILog on BV2, for the train core.

Implements the train-core task protocol (init_variables, loss_and_metrics, param_labels,
eval_metrics) plus `predict` for evaluation and `summary_images` for TensorBoard. Batches come in
two forms (avs_jax/data/input_pipeline.py), both accepted by every method:

- made on the host (evaluation; training with `config.data.device_prep=False`; tests, bench):
  `image` [B, H, W, 3] float in [0, 1], `echo` [B, H, W, 2] (ignored by the "rgb" variant),
  `depth` [B, H, W] metres with 0 = invalid; already augmented when they are training batches.
- raw (stage-1 training by default): `image` uint8, `wave` [B, 2, L] onset-aligned waveforms
  (+ `wave_length` int32 [B] when used whole), `depth`. The step makes the echo STFT here
  (avs_jax/data/device_prep.py) and, in training, ZoeDepth's augmentation from the step's key.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from avs_jax.data import audio, device_prep
from avs_jax.data.device_prep import AUGMENT_STREAM
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
        and `config.loss.silog_beta`, `config.data` (STFT settings, `augment` and `aug`, for raw
        batches) and `config.train` (`compute_dtype` and `cast_batch_keys`, applied to the
        inputs made from a raw batch, as the step applies them to a host batch's).
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
        data = config.get("data")
        stft = data.stft if data is not None else {}
        self.stft = {
            "n_fft": int(stft.get("n_fft", audio.N_FFT)),
            "win_length": int(stft.get("win_length", audio.WIN_LENGTH)),
            "hop_length": int(stft.get("hop_length", audio.HOP_LENGTH)),
        }
        augment = data is not None and data.get("augment", False)
        self.aug = data.aug.to_dict() if augment else None
        train = config.get("train")
        self.compute_dtype = jnp.dtype(train.compute_dtype) if train is not None else None
        self.cast_keys = tuple(train.cast_batch_keys) if train is not None else ()
        self._summary_depth = jax.jit(self._depth_at, static_argnums=3)

    def model_inputs(
        self, batch: dict, rng: Array | None = None, train: bool = False, cast: bool = True
    ) -> tuple[Array, Array | None, Array]:
        """(image float [B, H, W, 3] in [0, 1], echo [B, H, W, 2] or None for "rgb", depth float32
        [B, H, W] or None without one) of a batch of either form (module docstring).

        A raw batch (`wave`) gets its echo from the waveform and, with `train` and
        `config.data.augment`, ZoeDepth's augmentation drawn from `fold_in(rng, AUGMENT_STREAM)`;
        a host batch is used as it is (its training batches were augmented by the pipeline).
        cast: image and echo to `config.train.compute_dtype` where `cast_batch_keys` names them,
        after the uint8 -> float conversion and the augmentation, which run in float32.
        """
        depth = batch.get("depth")  # absent from init's shape-only batches
        depth = None if depth is None else depth.astype(jnp.float32)
        if "wave" not in batch:  # a host batch
            image, echo = device_prep.as_unit_float(batch["image"]), self._echo(batch)
        else:
            augment = train and self.aug is not None
            if augment and rng is None:
                raise ValueError("a raw training batch (wave) needs the step's key to augment")
            image, echo, depth = device_prep.stage1_inputs(
                batch["image"],
                depth,
                batch["wave"] if self.uses_echo else None,
                self.stft,
                batch.get("wave_length"),
                jax.random.fold_in(rng, AUGMENT_STREAM) if augment else None,
                self.aug if augment else None,
            )
        if cast and self.compute_dtype is not None:
            image = image.astype(self.compute_dtype) if "image" in self.cast_keys else image
            if echo is not None and "echo" in self.cast_keys:
                echo = echo.astype(self.compute_dtype)
        return image, echo, depth

    def _echo(self, batch: dict) -> Array | None:
        return batch["echo"] if self.uses_echo else None

    def init_variables(self, rng: jax.Array, batch: dict) -> dict:
        """{"params": ..., "batch_stats": ...} ({} batch_stats for "rgb": no BatchNorm)."""
        image, echo, _ = self.model_inputs(batch)
        variables = self.model.init(rng, image, echo, train=False)
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

        `rng` (the step's key) only draws the augmentation of a raw batch (`model_inputs`): the
        network has no dropout or drop-path (ZoeDepth fine-tunes BEiT with drop_path 0).
        """
        image, echo, depth = self.model_inputs(batch, rng, train)
        out, new_state = self._apply(params, model_state, image, echo, train)
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

        batch: host arrays of either form (module docstring), e.g. `image` [N, H, W, 3], `echo`
        [N, H, W, 2], `depth` [N, H, W].
        """
        image, echo, gt = (
            None if x is None else np.asarray(x) for x in self.model_inputs(batch, cast=False)
        )
        pred = self._summary_depth(variables, image, echo, tuple(gt.shape[1:3]))
        return {
            "depth": depth_panels(image, gt, np.asarray(pred), echo, self.model_config.max_depth)
        }

    def eval_metrics(self, params: Any, model_state: dict, batch: dict) -> dict[str, Array]:
        """SILog and the tables' metrics (avs_jax/metrics.py) against batch["depth"].

        The prediction is resized to the depth's size and clipped to the model's depth range,
        as the evaluation does; each metric comes with its image count for the set's mean.
        """
        image, echo, depth = self.model_inputs(batch)
        pred = self.predict({"params": params, **model_state}, image, echo).astype(jnp.float32)
        pred = resize_bilinear(pred, depth.shape[1:3], align_corners=True)[..., 0]
        means, count = batch_means(
            pred, depth, self.model_config.min_depth, self.model_config.max_depth
        )
        metrics = {**means, **{WEIGHT_PREFIX + k: count for k in means}}
        # SILog pools the batch's pixels: weighted by the images that have any, so that a batch
        # of padding only (the end of a multi-host split) is left out rather than NaN.
        with_depth = jnp.sum(jnp.any(depth > 0, axis=(1, 2)))
        silog = silog_loss(pred, depth, depth > 0, self.silog_alpha, self.silog_beta)
        metrics["silog"] = jnp.where(with_depth > 0, silog, 0.0)
        metrics[WEIGHT_PREFIX + "silog"] = with_depth
        return metrics
