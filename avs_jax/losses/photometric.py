"""Self-supervised photometric losses of Monodepth2 (paper Sec. 3.2.1, 3.3.2; REFERENCE.md).

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

Array = jax.Array

# SSIM stabilisers (Wang et al. 2004 with dynamic range L = 1): C1 = (0.01 L)², C2 = (0.03 L)².
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
# Guards the mean-normalisation of the disparity (Monodepth2: disp / (mean + 1e-7)).
MEAN_NORM_EPS = 1e-7


def _reflect_pad(x: Array, pad: int = 1) -> Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _mean_pool3(x: Array) -> Array:
    """3×3 mean with stride 1, VALID (input already padded)."""
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), "VALID")
    return s / 9.0


def ssim_loss(x: Array, y: Array) -> Array:
    """Per-pixel SSIM dissimilarity `clip((1 − SSIM)/2, 0, 1)` of `[B, H, W, C]` images → `[B, H, W, C]`.

    Monodepth2's SSIM: both images reflection-padded by 1, local statistics from a 3×3 mean pool.
    """
    x = _reflect_pad(x.astype(jnp.float32))
    y = _reflect_pad(y.astype(jnp.float32))
    mu_x = _mean_pool3(x)
    mu_y = _mean_pool3(y)
    sigma_x = _mean_pool3(x * x) - mu_x ** 2
    sigma_y = _mean_pool3(y * y) - mu_y ** 2
    sigma_xy = _mean_pool3(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    den = (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return jnp.clip((1 - num / den) / 2, 0.0, 1.0)


def reprojection_loss(pred: Array, target: Array, ssim_weight: float) -> Array:
    """Photometric error `[B, H, W]` = α·mean_c SSIM-loss + (1 − α)·mean_c |pred − target|.

    pred, target `[B, H, W, 3]`; α = `ssim_weight` (0.85 in Monodepth2).
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
    if identity is None:
        per_pixel = jnp.min(reprojection, axis=0)
        return jnp.mean(per_pixel), jnp.ones_like(per_pixel)
    combined = jnp.concatenate([identity, reprojection], axis=0)
    per_pixel = jnp.min(combined, axis=0)
    automask = (jnp.argmin(combined, axis=0) >= identity.shape[0]).astype(jnp.float32)
    return jnp.mean(per_pixel), automask


def smoothness_loss(disp: Array, image: Array) -> Array:
    """Edge-aware smoothness of a disparity `[B, h, w, 1]` given the image `[B, h, w, 3]` → scalar.

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
    return jnp.mean(dx_d * jnp.exp(-dx_i)) + jnp.mean(dy_d * jnp.exp(-dy_i))


def identity_losses(sources: Sequence[Array], target: Array, ssim_weight: float) -> Array:
    """Errors `[S, B, H, W]` of the un-warped source frames against the target (for automasking)."""
    return jnp.stack([reprojection_loss(s, target, ssim_weight) for s in sources])


def multiscale_photometric_loss(
    warped: Sequence[Sequence[Array]],
    disps: Sequence[Array],
    sources: Sequence[Array],
    target: Array,
    target_pyramid: Sequence[Array],
    rng: Array | None,
    *,
    ssim_weight: float,
    smoothness_weight: float,
    automask: bool,
    identity_noise: float,
) -> tuple[Array, dict[str, Array]]:
    """Monodepth2's total loss, averaged over scales → (loss, metrics).

    Args:
      warped: per scale s, the source frames `[B, H, W, 3]` warped into the target with that
        scale's disparity upsampled to full resolution (compared at full resolution).
      disps: per scale, the network's disparity `[B, H/2^s, W/2^s, 1]` (for smoothness).
      sources: the un-warped source frames `[B, H, W, 3]` (identity errors for automasking).
      target: the target frame `[B, H, W, 3]` (un-augmented).
      target_pyramid: per scale, the target frame at that scale's resolution (smoothness is
        edge-aware with the image of its own resolution, as Monodepth2's `("color", 0, scale)`).
      rng: key for the automasking tie-break noise N(0, 1)·`identity_noise` (drawn per scale);
        None gives no noise.
      ssim_weight, smoothness_weight, automask, identity_noise: config.loss (0.85, 1e-3, True,
        1e-5 in Monodepth2).

    Per scale s: `min-reprojection + smoothness_weight / 2^s · smoothness`; the total is the mean
    over scales (sum / 4 in Monodepth2, / 3 for the light 3-scale model).
    """
    identity = identity_losses(sources, target, ssim_weight) if automask else None
    total = jnp.float32(0.0)
    photometric = jnp.float32(0.0)
    smooth_total = jnp.float32(0.0)
    mask_fraction = jnp.float32(0.0)
    n = len(disps)
    for s, (warps, disp, image) in enumerate(zip(warped, disps, target_pyramid)):
        reprojection = jnp.stack([reprojection_loss(w, target, ssim_weight) for w in warps])
        ident = identity
        if ident is not None and rng is not None:
            noise = jax.random.normal(jax.random.fold_in(rng, s), ident.shape, jnp.float32)
            ident = ident + identity_noise * noise
        photo, mask = min_reprojection(reprojection, ident)
        smooth = smoothness_loss(disp, image)
        total = total + photo + smoothness_weight / 2 ** s * smooth
        photometric = photometric + photo
        smooth_total = smooth_total + smooth
        mask_fraction = mask_fraction + jnp.mean(mask)
    metrics = {"photometric": photometric / n, "smoothness": smooth_total / n,
               "automask_fraction": mask_fraction / n}
    return total / n, metrics
