"""Relative-stage (triples) inputs made on the accelerator, inside the jitted step: Monodepth2's augment.

The host decodes a triple's three frames to uint8 pixels and batches them
(`transforms.DecodeTriple(device_prep=True)`); this module turns that raw batch into the relative
task's inputs (`avs_jax/train/relative_task.py`), as `transforms.MonodepthAugment` does on the
host (docs/reference.md, "Augmentation"):

- `draw_monodepth`: MonodepthAugment's random draws, per sample, from one JAX key.
- `color_jitter`: `colour.color_jitter` (torchvision's ColorJitter with given factors and op
  order) per sample, the same factors for the three frames of a triple.
- `apply_monodepth`: the jitter on ``frames_aug`` (what the networks see) and one horizontal flip
  for both ``frames`` and ``frames_aug``, with the intrinsics and poses of the mirrored world.
- `triples_inputs`: uint8 -> [0, 1] and, in training, the augmentation.

Every op is per sample (elementwise maths, per-frame means, a flip), so a batch split over the
"data" mesh axis needs no communication, and the draws come from the step's key, so a resumed run
augments exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from avs_jax.data.colour import GRAY
from avs_jax.data.device_prep import as_unit_float

Array = jax.Array

# diag(-1, 1, 1, 1) M diag(-1, 1, 1, 1) flips the sign of row 0 and column 0: an elementwise
# product, exact (no matmul, whose float32 may be TF32 on a GPU).
_MIRROR_SIGNS = np.outer([-1, 1, 1, 1], [-1, 1, 1, 1]).astype(np.float32)


def draw_monodepth(rng: Array, batch_size: int, aug: dict[str, Any]) -> dict[str, Array]:
    """Per-sample draws of `transforms.MonodepthAugment` from one key.

    {"jitter": bool [B] (p jitter_p), "brightness", "contrast", "saturation": float32 [B] uniform
    in jitter_brightness etc., "hue": float32 [B] uniform in +-jitter_hue (turns), "order": int32
    [B, 4] a uniform random permutation of the ops (0 brightness, 1 contrast, 2 saturation, 3 hue),
    "flip": bool [B] (p flip_p)}. Factors are drawn for every sample and used where "jitter" holds.
    """
    ks = jax.random.split(rng, 7)
    shape = (batch_size,)

    def uniform(k, lo_hi):
        return jax.random.uniform(k, shape, jnp.float32, float(lo_hi[0]), float(lo_hi[1]))

    hue = float(aug["jitter_hue"])
    # argsort of i.i.d. uniforms: every permutation equally likely (ties have probability ~0).
    order = jnp.argsort(jax.random.uniform(ks[5], (batch_size, 4)), axis=-1).astype(jnp.int32)
    return {
        "jitter": jax.random.uniform(ks[0], shape) < aug["jitter_p"],
        "brightness": uniform(ks[1], aug["jitter_brightness"]),
        "contrast": uniform(ks[2], aug["jitter_contrast"]),
        "saturation": uniform(ks[3], aug["jitter_saturation"]),
        "hue": uniform(ks[4], (-hue, hue)),
        "order": order,
        "flip": jax.random.uniform(ks[6], shape) < aug["flip_p"],
    }


def _per_sample(v: Array, ndim: int) -> Array:
    """[B] -> [B, 1, ..., 1] with ``ndim`` axes in all, to broadcast against a batch."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def _grey(x: Array) -> Array:
    """ITU-R 601 luma [..] of RGB [.., 3] (`colour.GRAY`), as multiply-adds: no matmul precision."""
    return x[..., 0] * GRAY[0] + x[..., 1] * GRAY[1] + x[..., 2] * GRAY[2]


def shift_hue(rgb: Array, hue: Array) -> Array:
    """`colour._shift_hue` in jnp: the HSV hue of float32 [..., 3] in [0, 1] rotated by ``hue``
    turns (broadcast against rgb[..., 0], e.g. [B, 1, 1, 1] for a batch of triples).

    h6 is the hue in sixths of a turn (the largest channel decides the sector, r before g on ties,
    as torchvision); each output channel is ``v - c * clip(min(k, 4 - k), 0, 1)`` with
    ``k = (n + h6) mod 6``, n = 5, 3, 1 for r, g, b. A grey pixel (chroma c = 0) stays.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.maximum(jnp.maximum(r, g), b)
    c = v - jnp.minimum(jnp.minimum(r, g), b)
    is_r, is_g = v == r, v == g
    h6 = jnp.where(is_r, g - b, jnp.where(is_g, b - r, r - g)) / jnp.where(c > 0, c, 1.0)
    turn6 = 6 * hue.astype(jnp.float32)
    h6 = h6 + jnp.where(is_r, turn6, jnp.where(is_g, 2 + turn6, 4 + turn6))
    out = []
    for n in (5, 3, 1):
        k = jnp.mod(h6 + np.float32(n), np.float32(6))
        out.append(v - c * jnp.clip(jnp.minimum(k, 4 - k), 0, 1))
    return jnp.stack(out, axis=-1)


def color_jitter(frames: Array, draws: dict[str, Array]) -> Array:
    """`colour.color_jitter` per sample of frames float32 [B, ..., H, W, 3] in [0, 1].

    draws: `draw_monodepth`'s "brightness", "contrast", "saturation", "hue" [B] and "order"
    [B, 4]. Brightness x * b; contrast: blend with each frame's own mean grey level; saturation:
    blend with the per-pixel grey; hue: `shift_hue`. Each of the 4 stages computes the 4 ops and
    keeps, per sample, the one its order names there (the ops are cheap next to the networks).
    """
    x = jnp.asarray(frames, jnp.float32)
    nd = x.ndim
    bright, contrast, saturation, hue = (
        _per_sample(jnp.asarray(draws[k], jnp.float32), nd)
        for k in ("brightness", "contrast", "saturation", "hue")
    )
    order = jnp.asarray(draws["order"], jnp.int32)

    def stage(i: Array, x: Array) -> Array:
        op = _per_sample(order[:, i], nd)
        mean = jnp.mean(_grey(x), axis=(-2, -1), keepdims=True)[..., None]  # per frame
        candidates = (
            jnp.clip(x * bright, 0, 1),
            jnp.clip(contrast * x + (1 - contrast) * mean, 0, 1),
            jnp.clip(saturation * x + (1 - saturation) * _grey(x)[..., None], 0, 1),
            shift_hue(x, hue[..., 0]),
        )
        x = jnp.where(op == 0, candidates[0], jnp.where(op == 1, candidates[1], candidates[2]))
        return jnp.where(op == 3, candidates[3], x)

    # A loop, not 4 copies of the stage: a quarter of the program to compile.
    x = jax.lax.fori_loop(0, 4, stage, x)
    return x


def apply_monodepth(
    frames: Array, intrinsics: Array, poses: Array | None, draws: dict[str, Array]
) -> tuple[Array, Array, Array, Array | None]:
    """`draw_monodepth`'s draws applied as MonodepthAugment: (frames, frames_aug, intrinsics, poses).

    frames float32 [B, 3, H, W, 3] in [0, 1]; intrinsics [B, 3, 3] at (H, W); poses [B, 3, 4, 4]
    camera-to-world, or None (passes through). frames_aug is `color_jitter` of frames where
    "jitter" holds, else frames; then where "flip" holds, both are mirrored (the width axis),
    K[0, 2] -> W - 1 - K[0, 2] (pixel centres at integers) and poses -> M @ poses @ M with
    M = diag(-1, 1, 1, 1) (the mirrored world's camera-to-world transforms).
    """
    frames = jnp.asarray(frames, jnp.float32)
    nd = frames.ndim
    jitter, flip = _per_sample(draws["jitter"], nd), _per_sample(draws["flip"], nd)
    frames_aug = jnp.where(jitter, color_jitter(frames, draws), frames)
    frames = jnp.where(flip, jnp.flip(frames, axis=-2), frames)
    frames_aug = jnp.where(flip, jnp.flip(frames_aug, axis=-2), frames_aug)
    k = jnp.asarray(intrinsics, jnp.float32)
    cx = k[:, 0, 2]
    k = k.at[:, 0, 2].set(jnp.where(draws["flip"], np.float32(frames.shape[-2] - 1) - cx, cx))
    if poses is not None:
        poses = jnp.asarray(poses, jnp.float32)
        signs = jnp.where(_per_sample(draws["flip"], poses.ndim), _MIRROR_SIGNS, np.float32(1))
        poses = poses * signs
    return frames, frames_aug, k, poses


def monodepth_augment(
    frames: Array, intrinsics: Array, poses: Array | None, rng: Array, aug: dict[str, Any]
) -> tuple[Array, Array, Array, Array | None]:
    """Monodepth2's augmentation of a batch of triples (see `apply_monodepth`), drawn from ``rng``."""
    return apply_monodepth(frames, intrinsics, poses, draw_monodepth(rng, frames.shape[0], aug))


def triples_inputs(
    frames: Array,
    intrinsics: Array,
    poses: Array | None = None,
    rng: Array | None = None,
    aug: dict[str, Any] | None = None,
) -> tuple[Array, Array, Array, Array | None]:
    """A raw batch of triples made into the relative task's inputs: (frames, frames_aug float32
    [B, 3, H, W, 3] in [0, 1], intrinsics float32 [B, 3, 3], poses float32 [B, 3, 4, 4] or None).

    frames uint8 (or float in [0, 1]) [B, 3, H, W, 3] (t-20, t, t+20); intrinsics [B, 3, 3];
    poses [B, 3, 4, 4] or None. With ``rng`` and ``aug`` (config.data.aug): `monodepth_augment`;
    without, frames_aug is frames.
    """
    frames = as_unit_float(jnp.asarray(frames)).astype(jnp.float32)
    intrinsics = jnp.asarray(intrinsics, jnp.float32)
    poses = None if poses is None else jnp.asarray(poses, jnp.float32)
    if rng is None or aug is None:
        return frames, frames, intrinsics, poses
    return monodepth_augment(frames, intrinsics, poses, rng, aug)
