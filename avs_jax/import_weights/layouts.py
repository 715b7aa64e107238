"""Tensor layouts, PyTorch -> Flax: conv and linear kernels, qkv, stem channels, BEiT tables.

Pure numpy functions of one tensor each; which one applies to which tensor is the business of
the name mapping (`avs_jax.import_weights.mapping`).
"""

from __future__ import annotations

import numpy as np

from avs_jax.import_weights.errors import WeightImportError


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d weight [O, I, kh, kw] -> Flax/lax HWIO kernel [kh, kw, I, O]."""
    return np.transpose(w, (2, 3, 1, 0))


def conv_transpose_kernel(w: np.ndarray, transpose_kernel: bool = False) -> np.ndarray:
    """PyTorch ConvTranspose2d weight [I, O, kh, kw] -> kernel of `flax.linen.ConvTranspose`.

    PyTorch's transposed convolution is the gradient of a convolution: with a dilated input it
    correlates with the spatially flipped kernel. Flax's `ConvTranspose(transpose_kernel=False)`
    correlates the dilated input with the kernel as stored (no flip) and stores [kh, kw, I, O],
    so the kernel is flipped here. With `transpose_kernel=True` Flax flips and swaps I/O itself
    and stores [kh, kw, O, I]. PyTorch `padding=p, output_padding=q` corresponds to Flax explicit
    padding `((k-1-p, k-1-p+q), ...)` in both cases (tests/test_import_weights.py).
    """
    if transpose_kernel:
        return np.transpose(w, (2, 3, 1, 0))
    return np.ascontiguousarray(np.transpose(w, (2, 3, 0, 1))[::-1, ::-1])


def linear_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch Linear weight [O, I] -> Flax Dense kernel [I, O]."""
    return np.transpose(w)


def split_qkv(w: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits a fused attention qkv weight ([3·D, D] Linear or [3·D] bias) into q, k, v."""
    return tuple(np.split(w, 3, axis=axis))  # type: ignore[return-value]


def qkv_bias(q_bias: np.ndarray, v_bias: np.ndarray) -> np.ndarray:
    """BEiT's qkv bias [3·D]: separate q and v biases, the key has none (zeros)."""
    return np.concatenate([q_bias, np.zeros_like(q_bias), v_bias])


def adapt_input_channels(w: np.ndarray, in_channels: int) -> np.ndarray:
    """Stem conv weight [O, 3, kh, kw] (RGB) -> [O, in_channels, kh, kw].

    For a multiple of 3 (Monodepth2's pose encoder on a pair of frames, 6 channels) the RGB
    weights are duplicated and divided by the number of frames, so the conv on
    `[img, img]` equals the RGB conv on `img` (docs/reference.md, "Pose encoder on frame
    pairs"). Otherwise (the 2-channel echo STFT) each channel gets the sum of the RGB weights
    divided by `in_channels`, so an input equal on every channel gives the response of the grey
    image with that value.
    """
    if w.shape[1] == in_channels:
        return w
    if w.shape[1] != 3:
        raise WeightImportError(
            f"stem conv has {w.shape[1]} input channels; can only adapt 3 -> {in_channels}"
        )
    if in_channels % 3 == 0:
        n = in_channels // 3
        return np.concatenate([w] * n, axis=1) / n
    return np.repeat(w.sum(axis=1, keepdims=True), in_channels, axis=1) / in_channels


def _resize_axis_half_pixel(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linear resize of one axis with PyTorch's align_corners=False convention."""
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.maximum(pos, 0.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


def interpolate_rel_pos_table(
    table: np.ndarray, old_grid: tuple[int, int], new_grid: tuple[int, int], num_extra: int = 3
) -> np.ndarray:
    """BEiT relative-position bias table for another patch grid.

    `table` is [(2·Wh−1)·(2·Ww−1) + num_extra, heads]: one bias per relative offset of the
    `old_grid` (Wh, Ww) patches, then the cls-to-token, token-to-cls and cls-to-cls entries. The
    offset part is resized bilinearly (align_corners=False, as MiDaS's BEiT does at run time when
    the input is not 384×384) to the (2·Wh'−1)·(2·Ww'−1) offsets of `new_grid`; the extra entries
    are kept.
    """
    oh, ow = 2 * old_grid[0] - 1, 2 * old_grid[1] - 1
    nh, nw = 2 * new_grid[0] - 1, 2 * new_grid[1] - 1
    if table.shape[0] != oh * ow + num_extra:
        raise WeightImportError(
            f"relative position table has {table.shape[0]} rows, expected "
            f"{oh * ow + num_extra} for a {old_grid} patch grid"
        )
    grid = table[: oh * ow].reshape(oh, ow, -1).astype(np.float64)
    grid = _resize_axis_half_pixel(_resize_axis_half_pixel(grid, nh, 0), nw, 1)
    return np.concatenate([grid.reshape(nh * nw, -1), table[oh * ow :]], 0).astype(table.dtype)
