"""A random focal length for stage 1: each training image and its depth as a longer lens saw them.

Not ZoeDepth's (its augmentation keeps the camera): a network's metric depth follows the focal
length it trained with, so a camera with a longer lens reads as a nearer room (docs/quickstart.md,
"The camera"). Training on crops of 1/zoom of each side, resized back, with each pixel keeping its
metres, leaves the image's apparent size no reliable cue to the scale; the echo is the one left.
`config.data.aug.zoom` = (1, 1) (the default, as ZoeDepth) turns it off.

One function for both paths, ``xp`` = numpy on the host (`transforms.ZoeDepthAugment`) or
jax.numpy on the device (`device_prep.apply_zoedepth`), so that the two make the same crops.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Draws of the zoom: their own key, folded from the augmentation's, so that turning zoom on leaves
# every other draw of a step as it was.
ZOOM_STREAM = 7


def draw_zoom(rng: Array, batch_size: int, zoom_range: tuple[float, float]) -> dict[str, Any]:
    """{"zoom": [B] log-uniform in ``zoom_range``, "top", "left": [B] uniform in [0, 1)} (device)."""
    k_zoom, k_top, k_left = jax.random.split(jax.random.fold_in(rng, ZOOM_STREAM), 3)
    lo, hi = np.log(float(zoom_range[0])), np.log(float(zoom_range[1]))
    return {
        "zoom": jnp.exp(jax.random.uniform(k_zoom, (batch_size,), jnp.float32, lo, hi)),
        "top": jax.random.uniform(k_top, (batch_size,), jnp.float32),
        "left": jax.random.uniform(k_left, (batch_size,), jnp.float32),
    }


def _positions(n: int, zoom, offset, xp):
    """[B, n] source positions (pixel units, 0 = the first pixel's edge) of the n output pixels'
    centres: a window of n / zoom pixels at ``offset`` (fraction of the free margin)."""
    zoom, offset = zoom.astype(xp.float32)[:, None], offset.astype(xp.float32)[:, None]
    centres = (xp.arange(n, dtype=xp.float32) + xp.float32(0.5))[None, :]
    return offset * xp.float32(n) * (1 - 1 / zoom) + centres / zoom


def _taps(pos, n: int, xp):
    """Bilinear taps of [B, n] positions: (i0, i1) clamped to [0, n) and the weight of i1."""
    p = pos - xp.float32(0.5)
    i0 = xp.floor(p)
    frac = p - i0
    i0 = i0.astype(xp.int32)
    return xp.clip(i0, 0, n - 1), xp.clip(i0 + 1, 0, n - 1), frac


def zoom_crop(image, depth, zoom, top, left, xp=jnp):
    """image [B, H, W, C] and depth [B, H, W] as a lens ``zoom`` [B] (>= 1) times longer saw them.

    The window (H / zoom, W / zoom) at fractions (top, left) [B] of the free margin, resized back
    to (H, W): bilinear for the image (taps at the centre - 0.5, edges clamped), nearest for depth
    (the pixel holding the centre: no blend of invalid zeros into valid depth). zoom 1 returns
    both exactly.
    """
    _, h, w = depth.shape
    ys, xs = _positions(h, zoom, top, xp), _positions(w, zoom, left, xp)
    y0, y1, fy = _taps(ys, h, xp)
    x0, x1, fx = _taps(xs, w, xp)

    def rows(x, i):
        return xp.take_along_axis(x, i[:, :, None, None], axis=1)

    def cols(x, i):
        return xp.take_along_axis(x, i[:, None, :, None], axis=2)

    fy, fx = fy[:, :, None, None], fx[:, None, :, None]
    out = rows(image, y0) * (1 - fy) + rows(image, y1) * fy
    out = cols(out, x0) * (1 - fx) + cols(out, x1) * fx
    yn = xp.clip(xp.floor(ys).astype(xp.int32), 0, h - 1)
    xn = xp.clip(xp.floor(xs).astype(xp.int32), 0, w - 1)
    d = xp.take_along_axis(depth, yn[:, :, None], axis=1)
    d = xp.take_along_axis(d, xn[:, None, :], axis=2)
    return out.astype(image.dtype), d
