"""Depth evaluation metrics of the paper (Sec. 4.2), as Monodepth2 and ZoeDepth report them.

Per image, over valid pixels `0 < gt < max_depth` (paper footnote 5), after resizing the
prediction to the ground truth's resolution and clipping it to `[min_depth, max_depth]`:

    abs_rel  = mean(|gt - pred| / gt)          sq_rel   = mean((gt - pred)^2 / gt)
    rmse     = sqrt(mean((gt - pred)^2))       rmse_log = sqrt(mean((log gt - log pred)^2))
    a_k      = mean(max(gt / pred, pred / gt) < 1.25^k),  k = 1, 2, 3

then averaged over images. An image with no valid pixel is left out of the average and
counted (`n_skipped`), so a table never shows a NaN.

A prediction that is NaN or inf at a valid pixel has no error to measure there, and leaving
the pixel out would score the model on fewer pixels than the others: the jittable
`per_image_metrics` counts such pixels (`n_nonfinite`, the image's metrics NaN), and
`MetricAccumulator` (so `evaluate_arrays`) refuses an image with any, with a ValueError naming
the image and the count.
Everything here is jittable and batched; `MetricAccumulator` sums per-image values on the host
across batches.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from avs_jax.models.layers import resize_bilinear

Array = jax.Array

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
# Lower is better for these; higher for the threshold accuracies.
LOWER_IS_BETTER = {
    "abs_rel": True,
    "sq_rel": True,
    "rmse": True,
    "rmse_log": True,
    "a1": False,
    "a2": False,
    "a3": False,
}


def valid_mask(gt: Array, max_depth: float) -> Array:
    """Valid ground-truth pixels: finite and `0 < gt < max_depth` (paper footnote 5). [B, H, W]."""
    return jnp.isfinite(gt) & (gt > 0) & (gt < max_depth)


def resize_to(pred: Array, size: tuple[int, int]) -> Array:
    """Bilinear resize of a `[B, h, w]` depth map to `[B, H, W]`.

    align_corners=True, as ZoeDepth's evaluation does for its prediction.
    """
    if pred.shape[1:] == tuple(size):
        return pred
    return resize_bilinear(pred[..., None], size, align_corners=True)[..., 0]


def per_image_metrics(
    pred: Array, gt: Array, min_depth: float, max_depth: float, mask: Array | None = None
) -> dict[str, Array]:
    """The seven metrics of each image of a batch.

    Args:
      pred: predicted metric depth `[B, h, w]` (any resolution; resized to gt's).
      gt: ground-truth depth `[B, H, W]` in metres; 0, NaN, inf and values >= max_depth invalid.
      min_depth, max_depth: the prediction is clipped to this range; max_depth also bounds gt.
        min_depth must be > 0 (the log of a zero prediction is -inf): ValueError otherwise.
      mask: optional extra `[B, H, W]` boolean mask ANDed with the validity mask.

    Returns:
      dict of `[B]` arrays for METRIC_NAMES, plus `n_valid` `[B]` (valid pixel count) and
      `n_nonfinite` `[B]` (valid pixels where the prediction, resized, is NaN or inf). Images
      with `n_nonfinite > 0` hold NaN in every metric, images with `n_valid == 0` hold 0: the
      caller must not average either (`MetricAccumulator` raises on the first, skips the
      second).
    """
    if not min_depth > 0:
        raise ValueError(f"min_depth must be > 0 (log of a zero prediction), got {min_depth}")
    gt = gt.astype(jnp.float32)
    valid = valid_mask(gt, max_depth)
    if mask is not None:
        valid &= mask
    pred = resize_to(pred.astype(jnp.float32), gt.shape[1:])
    # NaN, also for inf, which the clip would turn into max_depth and pass for a prediction.
    pred = jnp.where(jnp.isfinite(pred), jnp.clip(pred, min_depth, max_depth), jnp.nan)
    # Keep the arithmetic finite on invalid pixels; they are masked out below.
    gt = jnp.where(valid, gt, 1.0)
    pred = jnp.where(valid, pred, 1.0)
    # The same for every row scaled_eval computes on one ground truth: one reduction, shared.
    n = valid.sum(axis=(1, 2))
    denom = jnp.maximum(n, 1).astype(jnp.float32)

    def mean(x: Array) -> Array:
        return jnp.where(valid, x, 0.0).sum(axis=(1, 2)) / denom

    ratio = jnp.maximum(gt / pred, pred / gt)
    abs_rel = mean(jnp.abs(gt - pred) / gt)  # NaN exactly where a valid pixel's pred is
    # Counted only when some image has one: a reduction per row would cost ~10% of a batch of
    # scaled_eval (it recomputes the resized, scaled prediction it reads).
    n_nonfinite = jax.lax.cond(
        jnp.isnan(abs_rel).any(),
        lambda: (valid & jnp.isnan(pred)).sum(axis=(1, 2)),
        lambda: jnp.zeros(n.shape, n.dtype),
    )
    out = {
        "abs_rel": abs_rel,
        "sq_rel": mean((gt - pred) ** 2 / gt),
        "rmse": jnp.sqrt(mean((gt - pred) ** 2)),
        "rmse_log": jnp.sqrt(mean((jnp.log(gt) - jnp.log(pred)) ** 2)),
        "a1": mean((ratio < 1.25).astype(jnp.float32)),
        "a2": mean((ratio < 1.25**2).astype(jnp.float32)),
        "a3": mean((ratio < 1.25**3).astype(jnp.float32)),
    }
    # The thresholds would count a NaN pixel as a miss: NaN too, so no metric of it looks valid.
    out = {k: jnp.where(n_nonfinite > 0, jnp.nan, v) for k, v in out.items()}
    return {**out, "n_valid": n, "n_nonfinite": n_nonfinite}


def batch_means(
    pred: Array, gt: Array, min_depth: float, max_depth: float, mask: Array | None = None
) -> tuple[dict[str, Array], Array]:
    """Validation's form of the table metrics: `per_image_metrics` averaged over the batch.

    Returns ({name: mean over the batch's images with a valid pixel}, that image count). The
    train loop weights each batch by the count (its "weight/" companions), so a validation
    average is the tables' average over images; padded rows (no valid pixel) drop out. Jittable.
    """
    m = per_image_metrics(pred, gt, min_depth, max_depth, mask)
    has = m["n_valid"] > 0
    count = has.sum()
    denom = jnp.maximum(count, 1).astype(jnp.float32)
    return {k: jnp.where(has, m[k], 0.0).sum() / denom for k in METRIC_NAMES}, count


@dataclasses.dataclass
class MetricAccumulator:
    """Averages per-image metrics over a dataset, leaving out images without valid pixels.

    `update` takes the output of `per_image_metrics` (device or host arrays) and an optional
    `[B]` boolean `example_mask` for padded batches; `result()` gives the averages with
    `n_images` (images averaged) and `n_skipped` (real images with no valid pixel).

    A real image whose prediction is NaN or inf at a valid pixel (`n_nonfinite > 0`), or with a
    non-finite metric, is a ValueError naming it by its index in the stream of rows given to
    `update` (padding included) and saying what is wrong; nothing of that batch is added.
    """

    sums: dict[str, float] = dataclasses.field(
        default_factory=lambda: {k: 0.0 for k in METRIC_NAMES}
    )
    n_images: int = 0
    n_skipped: int = 0
    n_rows: int = 0  # rows seen by `update`, padding included: the index in error messages

    def update(self, metrics: dict[str, Array], example_mask: np.ndarray | None = None) -> None:
        host = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
        real = (
            np.ones_like(host["n_valid"], bool)
            if example_mask is None
            else np.asarray(example_mask, bool)
        )
        n_bad = host.get("n_nonfinite", np.zeros_like(host["n_valid"]))
        bad = np.flatnonzero(real & (n_bad > 0))
        if bad.size:
            i = bad[0]
            raise ValueError(
                f"image {self.n_rows + i}: the prediction is NaN or inf at {int(n_bad[i])} of "
                f"its {int(host['n_valid'][i])} valid ground-truth pixels"
            )
        keep = real & (host["n_valid"] > 0)
        # Cannot happen with per_image_metrics' output (finite, clipped to min_depth > 0); a last
        # guard for hand-made dicts, so that no NaN or inf reaches an average.
        for k in METRIC_NAMES:
            bad = np.flatnonzero(keep & ~np.isfinite(host[k]))
            if bad.size:
                raise ValueError(f"image {self.n_rows + bad[0]}: {k} is {host[k][bad[0]]}")
        self.n_rows += len(real)
        self.n_skipped += int((real & ~keep).sum())
        self.n_images += int(keep.sum())
        for k in METRIC_NAMES:
            self.sums[k] += float(host[k][keep].sum())

    def result(self) -> dict[str, float]:
        """Mean of each metric over the kept images (NaN-free: 0 images give None values)."""
        out: dict[str, float] = {
            k: (self.sums[k] / self.n_images if self.n_images else None) for k in METRIC_NAMES
        }
        out["n_images"] = self.n_images
        out["n_skipped"] = self.n_skipped
        return out


def evaluate_arrays(
    pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float, batch_size: int = 8
) -> dict[str, float]:
    """Convenience: the dataset-average metrics of `pred` `[N, h, w]` against `gt` `[N, H, W]`.

    ValueError naming the image (its index in `pred`) when its prediction is NaN or inf at a
    valid ground-truth pixel (see `MetricAccumulator`).
    """
    acc = MetricAccumulator()
    fn = jax.jit(per_image_metrics, static_argnums=(2, 3))
    for i in range(0, len(gt), batch_size):
        acc.update(
            fn(
                jnp.asarray(pred[i : i + batch_size]),
                jnp.asarray(gt[i : i + batch_size]),
                min_depth,
                max_depth,
            )
        )
    return acc.result()
