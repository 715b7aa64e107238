"""Stage-1 inputs made on the accelerator, inside the jitted step: echo STFT and ZoeDepth's augment.

The host decodes (JPEG, depth, onset-aligned waveform) and batches; this module turns that raw
batch into the network's inputs (docs/reference.md, "Audio preprocessing", "Augmentation"):

- `echo_features`: BatVision's magnitude STFT of the binaural waveform, resized bilinearly to the
  RGB size; per sample the same as the host's `audio.echo_features` (float32 instead of float64).
- `zoedepth_augment`: `transforms.ZoeDepthAugment` on a batch, drawn from a JAX key: flip (which
  swaps the ears), rotation about the centre (PIL's convention), gamma/brightness/gain.
- `stage1_inputs`: both on a raw batch (uint8 image, waveform, depth), what the stage-1 task
  (`avs_jax/train/avsnet_task.py`) runs in the step.

Every op is per sample (gathers with a batch axis, elementwise maths), so a batch split over the
"data" mesh axis needs no communication, and the draws come from the step's key, so a resumed run
augments exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from avs_jax.data import audio

Array = jax.Array

# The augmentation's key is `fold_in(step key, AUGMENT_STREAM)` (both stages' tasks): a function of
# the base key and the step alone (exact resume), and independent of any other draw a later change
# makes from the step key (dropout, drop-path, the photometric loss's tie-break noise).
AUGMENT_STREAM = 1


# -- echo STFT -------------------------------------------------------------------------------------


def _reflect(j, length, xp=jnp):
    """numpy's ``mode="reflect"`` padding as an index map: j in [-n, length + n) -> [0, length).

    xp: numpy for a static length (a constant index), jax.numpy for per-sample lengths."""
    j = abs(j)
    return xp.clip(xp.where(j >= length, 2 * (length - 1) - j, j), 0, None)


def stft_magnitude(
    wave: Array, n_fft: int, win_length: int, hop_length: int, lengths: Array | None = None
) -> Array:
    """Magnitude STFT [B, n_fft // 2 + 1, 1 + L // hop_length, C] of waveforms [B, C, L].

    As `audio.stft_magnitude` (centred frames, reflect padding, periodic Hann window centred in
    the frame), computed from the window's ``win_length`` samples zero-padded to ``n_fft``: the
    same magnitudes, 8x less work. ``lengths`` (int [B]): each waveform's own length, the rest of
    its row being padding; the reflection then happens at that length, as on the unpadded
    recording, and the frames past ``1 + length // hop_length`` are meaningless.
    """
    b, c, n = wave.shape
    n_frames = 1 + n // hop_length
    first = (n_fft - win_length) // 2 - n_fft // 2  # frame t's window starts at hop * t + first
    j = first + hop_length * np.arange(n_frames)[:, None] + np.arange(win_length)[None, :]
    wave = wave.astype(jnp.float32)
    if lengths is None:  # one reflection for all: a constant index
        segs = wave[:, :, _reflect(j, n, np).reshape(-1)]
    else:
        idx = _reflect(j[None], lengths.astype(jnp.int32)[:, None, None]).reshape(b, 1, -1)
        segs = jnp.take_along_axis(wave, idx, axis=-1, mode="clip")
    segs = segs.reshape(b, c, n_frames, win_length)
    window = audio.hann_window(win_length).astype(np.float32)
    spec = jnp.abs(jnp.fft.rfft(segs * window, n=n_fft, axis=-1))  # [B, C, T, F]
    return spec.transpose(0, 3, 2, 1)


def _taps(n_in: int | Array, n_out: int) -> tuple[Array, Array, Array]:
    """Linear-interpolation taps (i0, i1, w1) [..., n_out] for n_in -> n_out, half-pixel centres.

    The source position (i + 0.5) * n_in / n_out - 0.5 is the fraction
    ((2i + 1) n_in - n_out) / (2 n_out): its floor and remainder are exact in integers, so the
    weights are those of `audio.resize_bilinear` (float64 there) rounded once to float32, also
    for a per-sample ``n_in`` (int [B]).
    """
    n_in = jnp.asarray(n_in, jnp.int32)[..., None]
    num = (2 * jnp.arange(n_out, dtype=jnp.int32) + 1) * n_in - n_out
    den = 2 * n_out
    i0 = jnp.floor_divide(num, den)
    w1 = (num - i0 * den).astype(jnp.float32) / np.float32(den)
    below, above = num < 0, i0 >= n_in - 1  # clipped to the first / last input
    i0 = jnp.where(below, 0, jnp.where(above, n_in - 1, i0))
    w1 = jnp.where(below | above, np.float32(0), w1)
    return i0, jnp.minimum(i0 + 1, n_in - 1), w1


def resize_bilinear(x: Array, size: tuple[int, int], n_cols: Array | None = None) -> Array:
    """Bilinear resize of [B, H, W, C] to ``size``, half-pixel centres, no antialiasing.

    `audio.resize_bilinear` per sample (rows first, then columns); ``n_cols`` (int [B]): resize
    only each sample's first ``n_cols`` columns. Not ``jax.image.resize``: it antialiases when
    downsampling (257 STFT bins -> 256 rows is one), which the host resize does not.
    """
    r0, r1, wr = _taps(x.shape[1], size[0])
    wr = wr[None, :, None, None]
    rows = x[:, r0] * (1 - wr) + x[:, r1] * wr  # [B, H', W, C]
    n = x.shape[2] if n_cols is None else n_cols
    c0, c1, wc = _taps(n, size[1])
    c0, c1, wc = (jnp.broadcast_to(t, (x.shape[0], size[1])) for t in (c0, c1, wc))
    wc = wc[:, None, :, None]
    take = lambda i: jnp.take_along_axis(rows, i[:, None, :, None], axis=2)  # noqa: E731
    return take(c0) * (1 - wc) + take(c1) * wc


def echo_features(
    wave: Array,
    size: tuple[int, int],
    n_fft: int,
    win_length: int,
    hop_length: int,
    lengths: Array | None = None,
) -> Array:
    """AVS-Net echo input [B, H, W, 2] of waveforms [B, 2, L] (cut or zero-padded on the host).

    Equal per sample to `audio.echo_features` of the waveform (of its first ``lengths[b]``
    samples when given: recordings used whole, BV1's own setting).
    """
    spec = stft_magnitude(wave, n_fft, win_length, hop_length, lengths)
    n_cols = None if lengths is None else 1 + lengths.astype(jnp.int32) // hop_length
    return resize_bilinear(spec, size, n_cols)


# -- ZoeDepth augmentation -------------------------------------------------------------------------


def draw_zoedepth(rng: Array, batch_size: int, aug: dict[str, Any]) -> dict[str, Array]:
    """Per-sample draws of `transforms.ZoeDepthAugment` from one key.

    {"flip": bool [B] (p flip_p), "angle": degrees [B] uniform in +-rotation_deg, "colour": bool
    [B] (p color_p), "gamma", "brightness": [B], "gain": [B, 3], each uniform in its range}.
    Colour factors are drawn for every sample and used where "colour" holds.
    """
    ks = jax.random.split(rng, 6)
    r = float(aug["rotation_deg"])

    def uniform(k, lo_hi, shape=(batch_size,)):
        return jax.random.uniform(k, shape, jnp.float32, float(lo_hi[0]), float(lo_hi[1]))

    return {
        "flip": jax.random.uniform(ks[0], (batch_size,)) < aug["flip_p"],
        "angle": uniform(ks[1], (-r, r)),
        "colour": jax.random.uniform(ks[2], (batch_size,)) < aug["color_p"],
        "gamma": uniform(ks[3], aug["gamma"]),
        "brightness": uniform(ks[4], aug["brightness"]),
        "gain": uniform(ks[5], aug["colour"], (batch_size, 3)),
    }


def rotate(x: Array, angle_deg: Array, bilinear: bool) -> Array:
    """[B, H, W, C] rotated by ``angle_deg`` [B] as PIL's ``Image.rotate`` (per channel, "F").

    Counter-clockwise about (W / 2, H / 2); output pixel (x, y) samples the input at
    centre + R(-angle) ((x + 0.5, y + 0.5) - centre), 0 where that falls outside [0, W) x [0, H).
    Bilinear: PIL's taps at the position - 0.5, neighbours clamped to the edge; nearest: the
    input pixel holding the position (floor).
    """
    b, h, w, _ = x.shape
    phi = -jnp.deg2rad(angle_deg.astype(jnp.float32))[:, None, None]
    cos, sin = jnp.cos(phi), jnp.sin(phi)
    u = (np.arange(w, dtype=np.float32) + np.float32(0.5) - np.float32(w / 2))[None, None, :]
    v = (np.arange(h, dtype=np.float32) + np.float32(0.5) - np.float32(h / 2))[None, :, None]
    xin = np.float32(w / 2) + cos * u + sin * v  # [B, H, W]
    yin = np.float32(h / 2) - sin * u + cos * v
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    flat = x.reshape(b, h * w, -1)

    def at(yi, xi):  # [B, H, W] int indices (clamped) -> [B, H, W, C]
        i = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
        return jnp.take_along_axis(flat, i.reshape(b, -1, 1), axis=1).reshape(x.shape)

    if bilinear:
        xs, ys = xin - 0.5, yin - 0.5
        x0, y0 = jnp.floor(xs), jnp.floor(ys)
        dx, dy = (xs - x0)[..., None], (ys - y0)[..., None]
        x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
        top = at(y0, x0) * (1 - dx) + at(y0, x0 + 1) * dx
        # PIL reuses the top row when the bottom one is past the last row.
        bottom = jnp.where(
            (y0 + 1 < h)[..., None], at(y0 + 1, x0) * (1 - dx) + at(y0 + 1, x0 + 1) * dx, top
        )
        out = top * (1 - dy) + bottom * dy
    else:
        out = at(jnp.floor(yin).astype(jnp.int32), jnp.floor(xin).astype(jnp.int32))
    return jnp.where(inside[..., None], out, jnp.zeros((), x.dtype))


def apply_zoedepth(
    image: Array, depth: Array, echo: Array | None, draws: dict[str, Array], rotation: bool = True
) -> tuple[Array, Array, Array | None]:
    """`draw_zoedepth`'s draws applied in ZoeDepthAugment's order: flip, rotation, colour.

    image [B, H, W, 3] float32 in [0, 1]; depth [B, H, W]; echo [B, H, W, 2] or None.
    rotation: False skips it (rotation_deg 0, as the host transform does).
    """
    flip = draws["flip"]
    image = jnp.where(flip[:, None, None, None], image[:, :, ::-1], image)
    depth = jnp.where(flip[:, None, None], depth[:, :, ::-1], depth)
    if echo is not None:  # mirroring the scene puts the left ear's sound in the right ear
        echo = jnp.where(flip[:, None, None, None], echo[..., ::-1], echo)
    if rotation:
        image = rotate(image, draws["angle"], bilinear=True)
        depth = rotate(depth[..., None], draws["angle"], bilinear=False)[..., 0]
    gamma, bright = draws["gamma"][:, None, None, None], draws["brightness"][:, None, None, None]
    coloured = jnp.clip(jnp.power(image, gamma) * bright * draws["gain"][:, None, None, :], 0, 1)
    image = jnp.where(draws["colour"][:, None, None, None], coloured, image)
    return image, depth, echo


def zoedepth_augment(
    image: Array, depth: Array, echo: Array | None, rng: Array, aug: dict[str, Any]
) -> tuple[Array, Array, Array | None]:
    """ZoeDepth's stage-1 augmentation of a batch (see `apply_zoedepth`), drawn from ``rng``."""
    draws = draw_zoedepth(rng, image.shape[0], aug)
    return apply_zoedepth(image, depth, echo, draws, rotation=float(aug["rotation_deg"]) > 0)


def as_unit_float(image: Array) -> Array:
    """uint8 [..] -> float32 in [0, 1] (the host's ``x * float32(1 / 255)``); floats unchanged."""
    if image.dtype == jnp.uint8:
        return image.astype(jnp.float32) * np.float32(1.0 / 255.0)
    return image


def stage1_inputs(
    image: Array,
    depth: Array,
    wave: Array | None,
    stft: dict[str, int],
    lengths: Array | None = None,
    rng: Array | None = None,
    aug: dict[str, Any] | None = None,
) -> tuple[Array, Array | None, Array]:
    """A raw stage-1 batch made into the network's inputs: (image float32 [B, H, W, 3] in [0, 1],
    echo [B, H, W, 2] or None, depth [B, H, W]).

    image uint8 (or float) [B, H, W, 3]; depth [B, H, W] (None passes through when nothing is
    drawn); wave [B, 2, L] or None (no echo: the "rgb" variant); stft: n_fft, win_length,
    hop_length; lengths: see `echo_features`. With ``rng`` and ``aug``: `zoedepth_augment` of
    (image, depth, echo) drawn from ``rng``, with the ears swapped on the waveform before the STFT
    (a per-channel transform: the same result) rather than on the [B, H, W, 2] echo after it,
    which cost XLA:CPU another ~60% of the echo's own time at 256x512.
    """
    image = as_unit_float(image)
    draws = None
    if rng is not None and aug is not None:
        draws = draw_zoedepth(rng, image.shape[0], aug)
        if wave is not None:
            wave = jnp.where(draws["flip"][:, None, None], wave[:, ::-1], wave)
    echo = None
    if wave is not None:
        echo = echo_features(wave, image.shape[1:3], **stft, lengths=lengths)
    if draws is not None:
        rotation = float(aug["rotation_deg"]) > 0
        image, depth, _ = apply_zoedepth(image, depth, None, draws, rotation)
    return image, echo, depth
