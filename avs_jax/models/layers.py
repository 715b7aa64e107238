"""Building blocks shared by every network: one `Conv` used everywhere, and resizes.

`Conv` lowers a convolution one of two ways, chosen by shape at trace time:

* XLA's own convolution (cuDNN on GPUs, the best choice there and for large maps on CPU);
* im2col + one matmul, on CPU only, for small output maps with many channels, where XLA:CPU's
  convolution is pathologically slow (docs/performance.md, "XLA:CPU": a 3×3 512→512 conv on a
  2×4 map takes 116 ms forward against 3.9 ms as im2col + matmul). The crossover was measured
  with `bench/conv_lowering.py`.

Both lowerings use the same kernel layout `[kh, kw, C_in, C_out]` (HWIO) and give the same values
(tests/test_layers.py), so checkpoints do not depend on where they were trained.

`resize_bilinear` (align corners) likewise has two lowerings with the same values: gathers on
accelerators, and on CPU two matmuls with interpolation matrices (`use_matmul_resize`).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array

# Output maps with at most this many pixels use im2col on CPU (bench/conv_lowering.py).
IM2COL_MAX_PIXELS = 256

# Monodepth2's encoder input normalisation (DepthNet, PoseNet, Lite-Mono): (x − 0.45) / 0.225.
MONODEPTH2_MEAN = 0.45
MONODEPTH2_STD = 0.225

# PyTorch's default Conv2d initialisation, which Monodepth2's decoders keep:
# kaiming_uniform(a=√5) = U(±1/√fan_in), i.e. variance 1/(3·fan_in). (Biases start at zero here.)
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def reflect_pad(x: Array, pad: int = 1) -> Array:
    """Reflection padding of the two axes before the last, `[..., H, W, C]` (PyTorch's
    ReflectionPad2d)."""
    widths = [(0, 0)] * (x.ndim - 3) + [(pad, pad), (pad, pad), (0, 0)]
    return jnp.pad(x, widths, mode="reflect")


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _same_or_valid(n: int, k: int, s: int, mode: str) -> tuple[int, int]:
    """Low/high padding of one axis for XLA's "SAME" or "VALID" convention."""
    if mode == "VALID":
        return (0, 0)
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return (total // 2, total - total // 2)


def use_im2col(out_h: int, out_w: int, lowering: str) -> bool:
    """Whether a conv with an `out_h × out_w` output map is lowered as im2col + matmul."""
    if lowering == "im2col":
        return True
    if lowering == "xla":
        return False
    return jax.default_backend() == "cpu" and out_h * out_w <= IM2COL_MAX_PIXELS


class Conv(nn.Module):
    """2-D convolution, NHWC, with PyTorch-style symmetric integer padding.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw).
      strides: (sh, sw).
      padding: symmetric zero padding on each side (PyTorch's `padding=`), or "SAME"/"VALID".
      use_bias: add a bias.
      feature_group_count: groups (PyTorch's `groups=`); `C_in` gives a depthwise conv.
      kernel_dilation: dilation of the kernel (PyTorch's `dilation=`).
      lowering: "auto" (by shape, see module docstring), "xla" or "im2col".
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: int | Sequence[int] | str = 0
    use_bias: bool = True
    feature_group_count: int = 1
    kernel_dilation: int | Sequence[int] = 1
    dtype: Any = None
    param_dtype: Any = jnp.float32
    lowering: str = "auto"
    kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """[B, H, W, C_in] -> [B, H', W', features]."""
        kh, kw = _pair(self.kernel_size)
        sh, sw = _pair(self.strides)
        dh, dw = _pair(self.kernel_dilation)
        groups = self.feature_group_count
        cin = x.shape[-1]
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, cin // groups, self.features), self.param_dtype
        )
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        kernel = kernel.astype(dtype)
        if isinstance(self.padding, str):
            pads = tuple(
                _same_or_valid(n, k, s, self.padding)
                for n, k, s in (
                    (x.shape[1], (kh - 1) * dh + 1, sh),
                    (x.shape[2], (kw - 1) * dw + 1, sw),
                )
            )
        else:
            ph, pw = _pair(self.padding)
            pads = ((ph, ph), (pw, pw))
        out_h = (x.shape[1] + sum(pads[0]) - (kh - 1) * dh - 1) // sh + 1
        out_w = (x.shape[2] + sum(pads[1]) - (kw - 1) * dw - 1) // sw + 1
        dn = ("NHWC", "HWIO", "NHWC")
        if use_im2col(out_h, out_w, self.lowering) and (kh, kw) != (1, 1):
            # Patches come out channel-major: feature index = c * kh * kw + i * kw + j.
            patches = jax.lax.conv_general_dilated_patches(
                x, (kh, kw), (sh, sw), pads, rhs_dilation=(dh, dw), dimension_numbers=dn
            )
            # Groups split the channel-major patch features and the output channels alike.
            cg, fg = cin // groups, self.features // groups
            patches = patches.reshape(*patches.shape[:3], groups, cg * kh * kw)
            w = kernel.reshape(kh, kw, cg, groups, fg)
            w = jnp.transpose(w, (3, 2, 0, 1, 4)).reshape(groups, cg * kh * kw, fg)
            y = jnp.einsum("bhwgk,gkf->bhwgf", patches, w).reshape(*patches.shape[:3], -1)
        elif (kh, kw) == (1, 1) and pads == ((0, 0), (0, 0)) and groups == 1:
            y = jnp.einsum("bhwc,cf->bhwf", x[:, ::sh, ::sw, :], kernel[0, 0])
        else:
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                (sh, sw),
                pads,
                rhs_dilation=(dh, dw),
                dimension_numbers=dn,
                feature_group_count=groups,
            )
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return y


def resize_bilinear(x: Array, size: tuple[int, int], align_corners: bool = True) -> Array:
    """Bilinear resize of `[B, H, W, C]` to `[B, h, w, C]`.

    `align_corners=True` is the convention of every resize in MiDaS/ZoeDepth (docs/reference.md);
    `False` is `jax.image.resize`'s half-pixel convention (PyTorch's align_corners=False,
    without antialiasing).
    """
    b, h, w, c = x.shape
    oh, ow = size
    if (h, w) == (oh, ow):
        return x
    if not align_corners:
        return jax.image.resize(x, (b, oh, ow, c), "bilinear", antialias=False)
    if not use_matmul_resize():
        return _resize_gather(x, size)
    # Separable: one interpolation matrix per axis, applied as matmuls (dots and their
    # transposes in the backward pass, where the gathers give scatter-adds).
    my = jnp.asarray(_interp_matrix(h, oh), x.dtype)  # [oh, h]
    mx = jnp.asarray(_interp_matrix(w, ow), x.dtype)  # [ow, w]
    hi = jax.lax.Precision.HIGHEST  # full float32 wherever it runs (a GPU's f32 default is TF32)
    y = jnp.einsum("ow,bhwc->bhoc", mx, x, precision=hi)
    return jnp.einsum("oh,bhwc->bowc", my, y, precision=hi)


def use_matmul_resize() -> bool:
    """Whether the align-corners resize runs as matmuls (CPU) rather than gathers (accelerators).

    On XLA:CPU the gathers and their scatter-add gradients, with the layout copies around them,
    were ~45 of the tiny AVS-Net train step's 241 thread-ms; as matmuls the step took less time
    in each of 7 alternating pairs of runs (median 0.81x, 0.44-0.90x; 2-core AMD EPYC,
    bench/resize_lowering.py, bench/RESULTS.md).
    Accelerators keep the gathers, which the GPU figures were measured with (one H100 pair at paper
    size put matmuls at 0.96x the step time: too little to switch on). Values agree to
    float32 rounding (~5e-7). `AVS_JAX_RESIZE=matmul` or `gather` forces one (read at trace time).
    """
    forced = os.environ.get(RESIZE_ENV, "")
    if forced:
        if forced not in ("matmul", "gather"):
            raise ValueError(f"{RESIZE_ENV}={forced!r}: expected matmul or gather")
        return forced == "matmul"
    return jax.default_backend() == "cpu"


RESIZE_ENV = "AVS_JAX_RESIZE"


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """`[n_out, n_in]` weights of align-corners linear interpolation (two per row, summing to 1)."""
    if n_out == 1:
        pos = np.zeros((1,), np.float32)
    else:
        pos = np.arange(n_out, dtype=np.float32) * np.float32((n_in - 1) / (n_out - 1))
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
    hi = np.clip(lo + 1, 0, n_in - 1)
    frac = pos - lo.astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def _resize_gather(x: Array, size: tuple[int, int]) -> Array:
    """Align-corners bilinear resize by gathering the two neighbours along each axis."""
    b, h, w, c = x.shape
    oh, ow = size

    def coords(n_in: int, n_out: int) -> tuple[Array, Array, Array]:
        if n_out == 1:
            pos = jnp.zeros((1,), jnp.float32)
        else:
            pos = jnp.arange(n_out, dtype=jnp.float32) * ((n_in - 1) / (n_out - 1))
        lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, n_in - 1)
        hi = jnp.clip(lo + 1, 0, n_in - 1)
        return lo, hi, pos - lo

    y0, y1, fy = coords(h, oh)
    x0, x1, fx = coords(w, ow)
    fy = fy.astype(x.dtype)[None, :, None, None]
    fx = fx.astype(x.dtype)[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def upsample_nearest(x: Array, factor: int = 2) -> Array:
    """Nearest-neighbour ×factor upsampling of `[B, H, W, C]` (PyTorch's `mode="nearest"`)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class ConvTransposeNonOverlap(nn.Module):
    """Transposed convolution with kernel == stride and no padding (DPT's reassemble upsampling).

    With kernel == stride the output patches do not overlap, so the op is one matmul and a
    reshape: `out[b, i*s + p, j*s + q, o] = sum_c x[b, i, j, c] * kernel[p, q, c, o] + bias[o]`.
    Kernel layout `[s, s, C_in, C_out]`; PyTorch's `ConvTranspose2d.weight` `[C_in, C_out, s, s]`
    maps to it by `transpose(2, 3, 0, 1)` with no spatial flip.
    """

    features: int
    stride: int
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """[B, h, w, C_in] -> [B, h*s, w*s, features]."""
        s = self.stride
        b, h, w, cin = x.shape
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (s, s, cin, self.features), self.param_dtype
        )
        dtype = self.dtype or x.dtype
        y = jnp.einsum("bijc,pqco->bipjqo", x.astype(dtype), kernel.astype(dtype))
        y = y.reshape(b, h * s, w * s, self.features)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return y
