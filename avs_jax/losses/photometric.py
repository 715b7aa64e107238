"""Self-supervised photometric losses of Monodepth2 (paper Sec. 3.2.1, 3.3.2; docs/reference.md).

The relative-depth model R is trained by view synthesis: a source frame warped into the target
with the predicted depth and pose should look like the target. Per pixel and per source frame the
reprojection error is `α · (1 − SSIM)/2 + (1 − α) · |·|₁` (α = 0.85), the minimum over source
frames is taken (occlusions), static pixels are masked automatically by competing with the
un-warped (identity) error, and an edge-aware smoothness term regularises the mean-normalised
disparity. Everything here is computed in float32, whatever the network's compute dtype.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from avs_jax.models.layers import reflect_pad

Array = jax.Array

# SSIM stabilisers (Wang et al. 2004 with dynamic range L = 1): C1 = (0.01 L)², C2 = (0.03 L)².
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
# Guards the mean-normalisation of the disparity (Monodepth2: disp / (mean + 1e-7)).
MEAN_NORM_EPS = 1e-7


def _mean_pool3(x: Array) -> Array:
    """3×3 mean with stride 1 over the H and W axes of `[..., H, W, C]`, VALID (already padded)."""
    window = (1,) * (x.ndim - 3) + (3, 3, 1)
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1,) * x.ndim, "VALID")
    return s / 9.0


def ssim_loss(x: Array, y: Array) -> Array:
    """Per-pixel SSIM dissimilarity `clip((1 − SSIM)/2, 0, 1)` of `[..., H, W, C]` images.

    Monodepth2's SSIM: both images reflection-padded by 1, local statistics from a 3×3 mean pool.
    Leading dimensions broadcast; the result has the broadcast shape. (No reshapes of the leading
    dimensions, so a batch axis sharded over devices stays put.)
    """
    shape = jnp.broadcast_shapes(x.shape, y.shape)
    x = reflect_pad(jnp.broadcast_to(x.astype(jnp.float32), shape))
    y = reflect_pad(jnp.broadcast_to(y.astype(jnp.float32), shape))
    mu_x = _mean_pool3(x)
    mu_y = _mean_pool3(y)
    sigma_x = _mean_pool3(x * x) - mu_x**2
    sigma_y = _mean_pool3(y * y) - mu_y**2
    sigma_xy = _mean_pool3(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return jnp.clip((1 - num / den) / 2, 0.0, 1.0)


def reprojection_loss(pred: Array, target: Array, ssim_weight: float) -> Array:
    """Photometric error `[..., H, W]` = α·mean_c SSIM-loss + (1 − α)·mean_c |pred − target|.

    pred, target `[..., H, W, 3]` (leading dimensions broadcast); α = `ssim_weight` (0.85 in
    Monodepth2, paper Eq. 5).
    """
    pred = pred.astype(jnp.float32)
    target = target.astype(jnp.float32)
    l1 = jnp.mean(jnp.abs(target - pred), axis=-1)
    ssim = jnp.mean(ssim_loss(pred, target), axis=-1)
    return ssim_weight * ssim + (1 - ssim_weight) * l1


def min_reprojection(reprojection: Array, identity: Array | None) -> tuple[Array, Array]:
    """Per-pixel minimum over source frames, with automasking → (loss scalar, automask `[B, H, W]`).

    reprojection `[S, B, H, W]`: errors of the S warped source frames. identity `[S, B, H, W]` or
    None: errors of the un-warped sources (already carrying the tie-breaking noise). A pixel where
    an identity error is the smallest is one that does not move relative to the camera (static
    scene, object moving with the camera); taking the minimum over both sets removes it from
    the loss (Monodepth2 automasking). The automask is 1 where a warped frame won.
    """
    per_pixel, automask = _min_over_sources(reprojection, identity)
    return jnp.mean(per_pixel), automask


def _min_over_sources(reprojection: Array, identity: Array | None) -> tuple[Array, Array]:
    """`[..., S, B, H, W]` errors → per-pixel minimum and automask, `[..., B, H, W]` each."""
    if identity is None:
        per_pixel = jnp.min(reprojection, axis=-4)
        return per_pixel, jnp.ones_like(per_pixel)
    combined = jnp.concatenate([identity, reprojection], axis=-4)
    per_pixel = jnp.min(combined, axis=-4)
    automask = (jnp.argmin(combined, axis=-4) >= identity.shape[-4]).astype(jnp.float32)
    return per_pixel, automask


def smoothness_loss(disp: Array, image: Array, per_example: bool = False) -> Array:
    """Edge-aware smoothness of a disparity `[B, h, w, 1]` given the image `[B, h, w, 3]` → scalar
    (`[B]` with `per_example`).

    `mean |∂x d*| e^{−mean_c |∂x I|} + mean |∂y d*| e^{−mean_c |∂y I|}` on the mean-normalised
    disparity `d* = d / mean(d)` (per image), so it is invariant to the scale of d.
    """
    disp = disp.astype(jnp.float32)
    image = image.astype(jnp.float32)
    disp = disp / (jnp.mean(disp, axis=(1, 2), keepdims=True) + MEAN_NORM_EPS)
    dx_d = jnp.abs(disp[:, :, :-1] - disp[:, :, 1:])
    dy_d = jnp.abs(disp[:, :-1] - disp[:, 1:])
    dx_i = jnp.mean(jnp.abs(image[:, :, :-1] - image[:, :, 1:]), axis=-1, keepdims=True)
    dy_i = jnp.mean(jnp.abs(image[:, :-1] - image[:, 1:]), axis=-1, keepdims=True)
    if per_example:
        return jnp.mean(dx_d * jnp.exp(-dx_i), axis=(1, 2, 3)) + jnp.mean(
            dy_d * jnp.exp(-dy_i), axis=(1, 2, 3)
        )
    return jnp.mean(dx_d * jnp.exp(-dx_i)) + jnp.mean(dy_d * jnp.exp(-dy_i))


def weighted_example_mean(x: Array, weights: Array) -> Array:
    """Mean over the last axis (examples) of `[..., B]`, each example weighted by `weights` `[B]`;
    an example of weight 0 (a padded row) adds nothing, not even a NaN; 0 when all weights are."""
    w = weights.astype(jnp.float32)
    x = jnp.where(w > 0, x, 0.0)
    return jnp.sum(x * w, axis=-1) / jnp.maximum(jnp.sum(w), 1e-12)


def multiscale_photometric_loss(
    warped: Array,
    disps: Sequence[Array],
    sources: Array,
    target: Array,
    target_pyramid: Sequence[Array],
    rng: Array | None,
    *,
    ssim_weight: float,
    smoothness_weight: float,
    automask: bool,
    identity_noise: float,
    example_weights: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Monodepth2's total loss, averaged over scales → (loss, metrics).

    Args:
      warped: `[S, N, B, H, W, 3]`: for each of the S scales, the N source frames warped into the
        target with that scale's disparity upsampled to full resolution (so every scale is
        compared at full resolution). One array, so that all scales share one computation.
      disps: per scale, the network's disparity `[B, H/2^s, W/2^s, 1]` (for smoothness).
      sources: the un-warped source frames `[N, B, H, W, 3]` (identity errors for automasking).
      target: the target frame `[B, H, W, 3]` (un-augmented).
      target_pyramid: per scale, the target frame at that scale's resolution (smoothness is
        edge-aware with the image of its own resolution, as Monodepth2's `("color", 0, scale)`).
      rng: key for the automasking tie-break noise N(0, 1)·`identity_noise` (fresh per scale, as
        Monodepth2 draws it inside its loop over scales); None: no noise.
      ssim_weight, smoothness_weight, automask, identity_noise: config.loss (0.85, 1e-3, True,
        1e-5 in Monodepth2).
      example_weights: `[B]` (validation: `valid_example`): every mean is then over the examples
        by these weights, so that a batch's padded rows count for nothing; None (training): plain
        means over the batch.

    Per scale s: `mean(min-reprojection) + smoothness_weight / 2^s · smoothness`; the total is the
    mean over scales (sum / 4 in Monodepth2, / 3 for the light 3-scale model; paper Eq. 6).
    """
    n_scales = warped.shape[0]
    reprojection = reprojection_loss(warped, target, ssim_weight)  # [S, N, B, H, W]
    identity = None
    if automask:
        identity = reprojection_loss(sources, target, ssim_weight)  # [N, B, H, W]
        identity = jnp.broadcast_to(identity, reprojection.shape)
        if rng is not None:
            identity = identity + identity_noise * jax.random.normal(rng, identity.shape)
    per_pixel, mask = _min_over_sources(reprojection, identity)  # [S, B, H, W]
    weights = smoothness_weight / 2.0 ** jnp.arange(n_scales)
    if example_weights is None:
        photo = jnp.mean(per_pixel, axis=(1, 2, 3))
        smooth = jnp.stack([smoothness_loss(d, im) for d, im in zip(disps, target_pyramid)])
        mask_fraction = jnp.mean(mask)
    else:
        photo = weighted_example_mean(jnp.mean(per_pixel, axis=(2, 3)), example_weights)
        smooth = jnp.stack(
            [
                weighted_example_mean(smoothness_loss(d, im, per_example=True), example_weights)
                for d, im in zip(disps, target_pyramid)
            ]
        )
        mask_fraction = weighted_example_mean(jnp.mean(mask, axis=(0, 2, 3)), example_weights)
    total = jnp.mean(photo + weights * smooth)
    metrics = {
        "photometric": jnp.mean(photo),
        "smoothness": jnp.mean(smooth),
        "automask_fraction": mask_fraction,
    }
    return total, metrics
