"""The relative-depth stage as a Task for the shared train core (Monodepth2 self-supervision).

Paper Sec. 3.2.1 / 3.3.2: the relative model R (Monodepth2 DepthNet or the light 3-scale
variant) is trained on BV1 frame triples (t−20, t, t+20) by view synthesis. Per batch:

* the DepthNet sees the (augmented) centre frame and predicts disparities at every scale;
* the PoseNet sees the pairs in temporal order, `[frame −1, frame 0]` and `[frame 0, frame +1]`;
  the first motion is inverted so both map target-camera points into the source camera
  (Monodepth2's `predict_poses`, two calls of the pose network, BatchNorm statistics per pair);
* every scale's disparity is upsampled (bilinear) to full resolution and turned into depth; the
  *un-augmented* source frames are warped into the target and compared with the *un-augmented*
  target (Monodepth2 computes the photometric loss on `color`, the networks see `color_aug`);
* `losses.photometric.multiscale_photometric_loss` does the rest (automasking, smoothness).

Batch, in one of two forms (avs_jax/data/input_pipeline.py), both accepted by every method:

- made on the host (evaluation; training with `config.data.device_prep=False`; tests): `frames`
  [B, 3, H, W, 3] float in [0, 1] (t−20, t, t+20), optional `frames_aug` (same shape; what the
  networks see, already augmented in training batches), `intrinsics` [B, 3, 3] at (H, W);
  optionally `poses` [B, 3, 4, 4] and `has_pose` [B] (pose errors in validation) and, for
  evaluation, `depth` [B, H, W] metres of the centre frame (0 = invalid), scored after median
  scaling.
- raw (training with device prep), recognised by uint8 `frames`: no `frames_aug`; the step
  scales the frames to [0, 1] and, in training with `config.data.augment`, makes Monodepth2's
  augmentation (jitter on `frames_aug`, flip of both, K and poses mirrored) from
  `fold_in(step key, AUGMENT_STREAM)` (avs_jax/data/device_triples.py); the made `frames_aug`
  gets `config.train.compute_dtype` where `cast_batch_keys` names it, as the step casts a host
  batch's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from avs_jax import geometry
from avs_jax.data import device_triples
from avs_jax.data.device_prep import AUGMENT_STREAM, as_unit_float
from avs_jax.errors import BadInputError
from avs_jax.losses import photometric
from avs_jax.metrics import batch_means
from avs_jax.models.layers import resize_bilinear
from avs_jax.models.relative_model import build_depth_net, build_pose_net
from avs_jax.scaling import scale_factor_median
from avs_jax.train.pose_metrics import pose_errors
from avs_jax.train.summaries import disparity_panels
from avs_jax.train.tasks import WEIGHT_PREFIX

Array = jax.Array
PyTree = Any


class RelativeDepthModel(nn.Module):
    """DepthNet + PoseNet of the relative stage, one set of variables {"depth_net", "pose_net"}."""

    depth_net: nn.Module
    pose_net: nn.Module

    def __call__(self, frames: Array, train: bool) -> tuple[list[Array], Array, Array]:
        """frames `[B, 3, H, W, 3]` → (disparities of frame 0 per scale, axisangle `[2, B, 3]`,
        translation `[2, B, 3]`) with index 0 for the pair (−1, 0) and 1 for (0, +1)."""
        disps = self.depth(frames[:, 1], train)
        prev = self.pose_net(jnp.concatenate([frames[:, 0], frames[:, 1]], axis=-1), train)
        nxt = self.pose_net(jnp.concatenate([frames[:, 1], frames[:, 2]], axis=-1), train)
        axisangle = jnp.stack([prev[0], nxt[0]])
        translation = jnp.stack([prev[1], nxt[1]])
        return disps, axisangle, translation

    def depth(self, image: Array, train: bool) -> list[Array]:
        """image `[B, H, W, 3]` → disparities `[B, H/2^s, W/2^s, 1]`, scale 0 first."""
        return self.depth_net(image, train)


def _downsample(image: Array, scale: int) -> Array:
    """Target frame at pyramid level `scale` for the smoothness term.

    Monodepth2's data loader resizes with PIL's antialiasing filter; an antialiased linear
    resize is the same idea (a low-pass before subsampling).
    """
    if scale == 0:
        return image
    b, h, w, c = image.shape
    return jax.image.resize(image, (b, h // 2**scale, w // 2**scale, c), "linear", antialias=True)


def relative_losses(
    disps: list[Array],
    axisangle: Array,
    translation: Array,
    frames: Array,
    intrinsics: Array,
    rng: Array | None,
    loss: ml_collections.ConfigDict,
    target_pyramid: list[Array] | None = None,
    example_weights: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Monodepth2's loss from network outputs → (loss, metrics); see the module docstring.

    disps: per scale `[B, H/2^s, W/2^s, 1]`; axisangle, translation `[2, B, 3]` for the pairs
    (−1, 0) and (0, +1); frames `[B, 3, H, W, 3]` un-augmented; intrinsics `[B, 3, 3]`;
    target_pyramid: the target frame per scale for the smoothness term (default: downsampled
    here, as Monodepth2's data loader does); example_weights `[B]` (validation's
    `valid_example`): means over the examples by weight, a padded row (all zeros, its
    intrinsics too) counting for nothing; None: plain batch means (training).
    """
    frames = frames.astype(jnp.float32)
    h, w = frames.shape[2:4]
    target = frames[:, 1]
    sources = jnp.stack([frames[:, 0], frames[:, 2]])  # [2, B, H, W, 3]
    K = intrinsics.astype(jnp.float32)
    if example_weights is not None:
        # A padded row's zero intrinsics have no inverse: give it any camera (its weight is 0).
        real = (example_weights > 0)[:, None, None]
        K = jnp.where(real, K, jnp.eye(3, dtype=K.dtype))
    inv_K = geometry.inverse_3x3(K)
    poses = jnp.stack(
        [
            # The pose net saw (−1, 0): its motion maps −1 → 0, so invert it to map 0 → −1.
            geometry.transformation_from_parameters(axisangle[0], translation[0], invert=True),
            geometry.transformation_from_parameters(axisangle[1], translation[1], invert=False),
        ]
    )  # [2, B, 4, 4]
    # Every scale's disparity at full resolution, all scales and sources warped in one batch.
    disp_full = jnp.stack(
        [resize_bilinear(d.astype(jnp.float32), (h, w), align_corners=False) for d in disps]
    )[..., 0]  # [S, B, H, W]
    _, depth = geometry.disp_to_depth(disp_full, loss.min_depth, loss.max_depth)
    points = geometry.backproject(depth, inv_K)[:, None]  # [S, 1, B, H, W, 3]
    grid = geometry.project(points, K, poses)  # [S, 2, B, H, W, 2]
    warped = geometry.bilinear_sample(sources, grid, loss.align_corners)  # [S, 2, B, H, W, 3]
    pyramid = target_pyramid
    if pyramid is None:
        pyramid = [_downsample(target, s) for s in range(len(disps))]
    total, metrics = photometric.multiscale_photometric_loss(
        warped,
        disps,
        sources,
        target,
        pyramid,
        rng,
        ssim_weight=loss.ssim_weight,
        smoothness_weight=loss.smoothness_weight,
        automask=loss.automask,
        identity_noise=loss.identity_noise,
        example_weights=example_weights,
    )
    depth0 = depth[0]
    metrics["loss"] = total
    if example_weights is None:
        metrics["mean_depth"] = jnp.mean(depth0)
        metrics["translation_norm"] = jnp.mean(jnp.linalg.norm(translation, axis=-1))
    else:
        mean = photometric.weighted_example_mean
        metrics["mean_depth"] = mean(jnp.mean(depth0, axis=(1, 2)), example_weights)
        norms = jnp.mean(jnp.linalg.norm(translation, axis=-1), axis=0)  # [B]
        metrics["translation_norm"] = mean(norms, example_weights)
    return total, metrics


# The metrics of `relative_losses`, means over a batch's rows.
LOSS_METRICS = (
    "loss",
    "photometric",
    "smoothness",
    "automask_fraction",
    "mean_depth",
    "translation_norm",
)
# Predictions are clipped to [EVAL_MIN_DEPTH, max_depth] before the metrics, as configs/evaluate.py.
EVAL_MIN_DEPTH = 1e-3


class RelativeDepthTask:
    """The relative-depth stage's Task (avs_jax/train/tasks.py) for the train core."""

    def __init__(self, config: ml_collections.ConfigDict):
        model_scales = tuple(config.model.scales)
        loss_scales = tuple(config.loss.get("scales", model_scales))
        if loss_scales != model_scales:
            raise BadInputError(
                f"config.loss.scales {loss_scales} differs from "
                f"config.model.scales {model_scales}: the loss uses the scales "
                "the model outputs"
            )
        if tuple(sorted(model_scales)) != tuple(range(len(model_scales))):
            raise BadInputError(f"config.model.scales {model_scales}: expected 0, 1, …, n−1")
        self.config = config
        self.loss_config = config.loss
        # The evaluation's depth cap (the pipeline already zeroes depth beyond it).
        self.eval_max_depth = float(config.data.max_depth) if "data" in config else float("inf")
        self.model = RelativeDepthModel(build_depth_net(config.model), build_pose_net(config.model))
        # Raw batches only (module docstring): the augmentation and the compute-dtype cast that
        # the pipeline and the step give a host batch.
        data = config.get("data")
        augment = data is not None and data.get("augment", False)
        self.aug = data.aug.to_dict() if augment else None
        train_config = config.get("train")
        self.compute_dtype = (
            jnp.dtype(train_config.compute_dtype) if train_config is not None else None
        )
        self.cast_keys = tuple(train_config.cast_batch_keys) if train_config is not None else ()
        self._summary_disparity = jax.jit(self._disparity)

    # -- inputs -----------------------------------------------------------------------------

    def model_inputs(
        self, batch: dict[str, Any], rng: Array | None = None, train: bool = False
    ) -> tuple[Array, Array, Array, Array | None]:
        """(frames float32 [B, 3, H, W, 3] un-augmented, net_frames float32 (what the networks
        see), intrinsics [B, 3, 3], poses [B, 3, 4, 4] or None) of a batch of either form.

        A host batch is used as it is (net_frames: its `frames_aug`, else `frames`). A raw batch
        (uint8 `frames`) is scaled to [0, 1] and, with `train` and `config.data.augment`,
        augmented from `fold_in(rng, AUGMENT_STREAM)`; its net_frames then go through
        `config.train.compute_dtype` where `cast_batch_keys` names "frames_aug", as a host
        batch's `frames_aug` does in the step (avs_jax/train/step.py `cast_inputs`).
        """
        frames = jnp.asarray(batch["frames"])
        if frames.dtype != jnp.uint8:  # a host batch
            frames = frames.astype(jnp.float32)
            net_frames = jnp.asarray(batch.get("frames_aug", frames), jnp.float32)
            return frames, net_frames, jnp.asarray(batch["intrinsics"]), batch.get("poses")
        augment = train and self.aug is not None
        if augment and rng is None:
            raise ValueError("a raw training batch (uint8 frames) needs the step's key to augment")
        frames, net_frames, intrinsics, poses = device_triples.triples_inputs(
            frames,
            batch["intrinsics"],
            batch.get("poses"),
            jax.random.fold_in(rng, AUGMENT_STREAM) if augment else None,
            self.aug if augment else None,
        )
        if self.compute_dtype is not None and "frames_aug" in self.cast_keys:
            net_frames = net_frames.astype(self.compute_dtype).astype(jnp.float32)
        return frames, net_frames, intrinsics, poses

    # -- protocol ---------------------------------------------------------------------------

    def init_variables(self, rng: Array, batch: dict[str, Any]) -> dict[str, PyTree]:
        """{"params", "batch_stats"} of both networks, shaped by `batch["frames"]` (float in
        [0, 1] or uint8)."""
        frames = as_unit_float(jnp.asarray(batch["frames"])).astype(jnp.float32)
        variables = self.model.init(rng, frames, train=False)
        return {"params": variables["params"], "batch_stats": variables["batch_stats"]}

    def loss_and_metrics(
        self,
        params: PyTree,
        model_state: dict[str, PyTree],
        batch: dict[str, Any],
        rng: Array,
        train: bool,
    ) -> tuple[Array, tuple[dict[str, PyTree], dict[str, Array]]]:
        """(loss fp32, (new model_state, metrics)) on one batch; BatchNorm updates when `train`.

        `rng` (the step's key) draws the loss's tie-break noise and, for a raw training batch,
        the augmentation (`model_inputs`). Out of training, a batch's `valid_example` weights its
        rows (padded ones count for nothing).
        """
        frames, net_frames, intrinsics, poses = self.model_inputs(batch, rng, train)
        weights = None
        if not train and "valid_example" in batch:
            weights = jnp.asarray(batch["valid_example"], jnp.float32)
        variables = {"params": params, **model_state}
        if train:
            (disps, axisangle, translation), new_state = self.model.apply(
                variables, net_frames, train=True, mutable=["batch_stats"]
            )
            new_state = dict(new_state)
        else:
            disps, axisangle, translation = self.model.apply(variables, net_frames, train=False)
            new_state = model_state
        loss, metrics = relative_losses(
            disps,
            axisangle,
            translation,
            frames,
            intrinsics,
            rng,
            self.loss_config,
            example_weights=weights,
        )
        if not train and poses is not None and "has_pose" in batch:
            metrics.update(
                pose_errors(
                    axisangle,
                    translation,
                    jnp.asarray(poses),
                    jnp.asarray(batch["has_pose"]),
                )
            )
        return loss, (new_state, metrics)

    def param_labels(self, params: PyTree) -> PyTree:
        """Every parameter trains at the base rate (Monodepth2 has one Adam learning rate)."""
        return jax.tree.map(lambda _: "default", params)

    def eval_metrics(
        self, params: PyTree, model_state: dict[str, PyTree], batch: dict[str, Any]
    ) -> dict[str, Array]:
        """Validation: the loss terms without the tie-break noise; with ground-truth `depth` of
        the centre frame, the tables' metrics (avs_jax/metrics.py) of the depth median-scaled
        per image (the paper's eq. 3 with the ground truth as the scale source). Each loss term
        comes with its count of real rows, so that the set's mean leaves padded rows out."""
        _, (_, metrics) = self.loss_and_metrics(params, model_state, batch, None, train=False)
        if "valid_example" in batch:
            real = jnp.sum(jnp.asarray(batch["valid_example"], jnp.float32))
            metrics.update({WEIGHT_PREFIX + k: real for k in LOSS_METRICS})
        if "depth" in batch:
            gt = jnp.asarray(batch["depth"], jnp.float32)
            variables = {"params": params, **model_state}
            pred = self.predict_relative(
                variables, as_unit_float(jnp.asarray(batch["frames"])[:, 1]), out_size=gt.shape[1:3]
            )
            valid = gt > 0
            scaled = pred * scale_factor_median(pred, gt, valid)[:, None, None]
            means, count = batch_means(scaled, gt, EVAL_MIN_DEPTH, self.eval_max_depth)
            metrics.update({**means, **{WEIGHT_PREFIX + k: count for k in means}})
        return metrics

    # -- inference --------------------------------------------------------------------------

    def predict_relative(
        self, variables: dict[str, PyTree], image: Array, out_size: tuple[int, int] | None = None
    ) -> Array:
        """Relative depth `[B, h, w]` of images `[B, H, W, 3]` in [0, 1] (H, W multiples of 32).

        The scale-0 disparity is resized (bilinear) to `out_size` (default (H, W)) and then
        turned into depth with `disp_to_depth`, as Monodepth2's evaluation resizes disparities.
        Jit it with `out_size` static.
        """
        disps = self.model.apply(
            variables, jnp.asarray(image, jnp.float32), False, method=RelativeDepthModel.depth
        )
        disp = disps[0]
        if out_size is not None:
            disp = resize_bilinear(disp, tuple(out_size), align_corners=False)
        _, depth = geometry.disp_to_depth(
            disp[..., 0], self.loss_config.min_depth, self.loss_config.max_depth
        )
        return depth

    def _disparity(self, variables: dict[str, PyTree], image: Array) -> Array:
        """Scale-0 disparity `[B, H, W]` (the sigmoid output) of images `[B, H, W, 3]`."""
        disps = self.model.apply(
            variables, jnp.asarray(image, jnp.float32), False, method=RelativeDepthModel.depth
        )
        return disps[0][..., 0].astype(jnp.float32)

    def summary_images(
        self, variables: dict[str, PyTree], batch: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """{"disparity": uint8 [N, 2H, W, 3]}: per sample the centre frame over its disparity
        (avs_jax/train/summaries.py `disparity_panels`), on the host; batch: host `frames`
        [N, 3, H, W, 3] (float in [0, 1], or uint8)."""
        image = np.asarray(batch["frames"])[:, 1]
        if image.dtype == np.uint8:
            image = image.astype(np.float32) * np.float32(1.0 / 255.0)
        disp = np.asarray(self._summary_disparity(variables, image))
        return {"disparity": disparity_panels(image, disp)}
