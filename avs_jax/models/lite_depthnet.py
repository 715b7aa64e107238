"""A light 3-scale DepthNet: dilated depthwise-separable encoder + channel-attention blocks.

The paper's Table 2 also trains Lite-Mono (Zhang et al. 2023; 3.1 M parameters, scales 0-2,
docs/reference.md). This is our own network in that spirit, not a port of it:

* stem: two 3×3 convs (the first strided) → 1/2;
* three stages at 1/4, 1/8, 1/16, each a strided 3×3 conv followed by residual
  *dilated depthwise-separable* blocks (depthwise 3×3 with a growing dilation, BN, pointwise
  expand, GELU, pointwise project, layer scale): a large receptive field for few parameters;
* the last block(s) of each stage add *global channel attention* (cross-covariance attention over
  channels, linear in the number of pixels), the cheap global context that Lite-Mono's LGFI gives;
* Monodepth2's decoder (`depthnet.DepthDecoder`) over the four features, disparities at 3 scales.

At the paper size (`default_lite_config("full")`) it has about 3 M parameters
(tests/test_depthnet.py checks 2.5-3.5 M).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from avs_jax.models.depthnet import DepthDecoder
from avs_jax.models.layers import MONODEPTH2_MEAN, MONODEPTH2_STD, Conv
from avs_jax.models.resnet import batch_norm

Array = jax.Array

# Residual branches start scaled by this learnable per-channel factor (layer scale, as Lite-Mono
# and ConvNeXt do), so that a deep stack of un-normalised residual blocks starts as the identity.
LAYER_SCALE_INIT = 1e-6


def layer_scale(module: nn.Module, name: str, x: Array) -> Array:
    """Multiplies the residual branch `x [..., C]` by a learnable per-channel factor."""
    gamma = module.param(name, nn.initializers.constant(LAYER_SCALE_INIT), (x.shape[-1],))
    return x * gamma.astype(x.dtype)


def default_lite_config(size: str = "full") -> ml_collections.ConfigDict:
    """Architecture fields of config.model for name="lite" (size "full" ≈ 3 M params, or "tiny")."""
    c = ml_collections.ConfigDict()
    if size == "full":
        c.stem_width = 48
        c.widths = (48, 80, 128)  # channels at 1/4, 1/8, 1/16 (Lite-Mono's widths)
        c.depths = (4, 4, 8)  # blocks per stage, the last `global_blocks` with attention
        c.dilations = ((1, 2, 3), (1, 2, 3), (1, 2, 3, 1, 2, 3, 2, 4))
        c.expansion = 6
        c.global_blocks = 1
        c.heads = 8
        c.decoder_channels = (16, 32, 64, 128)
    else:
        c.stem_width = 8
        c.widths = (8, 16, 16)
        c.depths = (1, 1, 2)
        c.dilations = ((1,), (1,), (1, 2))
        c.expansion = 2
        c.global_blocks = 1
        c.heads = 2
        c.decoder_channels = (4, 8, 8, 16)
    return c


class DilatedBlock(nn.Module):
    """Residual dilated depthwise-separable block, `[B, H, W, C] -> [B, H, W, C]`."""

    dilation: int = 1
    expansion: int = 6
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        c = x.shape[-1]
        y = Conv(
            c,
            3,
            1,
            self.dilation,
            feature_group_count=c,
            kernel_dilation=self.dilation,
            dtype=self.dtype,
            name="dwconv",
        )(x)
        y = batch_norm(train, "bn", self.dtype)(y)
        y = nn.gelu(Conv(c * self.expansion, 1, dtype=self.dtype, name="pwconv1")(y))
        y = Conv(c, 1, dtype=self.dtype, name="pwconv2")(y)
        return x + layer_scale(self, "gamma", y)


class ChannelAttention(nn.Module):
    """Global context by cross-covariance attention over channels (XCiT), `[B,H,W,C] -> same`.

    Queries and keys are L2-normalised along the pixels, so the `C/h × C/h` attention map per
    head costs O(H·W·C²/h) and sees the whole image; then a pointwise MLP. Both residual.
    """

    heads: int = 8
    expansion: int = 6
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, h, w, c = x.shape
        d = c // self.heads
        y = nn.LayerNorm(dtype=self.dtype, name="norm1")(x)
        qkv = Conv(3 * c, 1, dtype=self.dtype, name="qkv")(y).reshape(b, h * w, 3, self.heads, d)
        # Attention statistics in fp32 (softmax over normalised dot products).
        q, k, v = (qkv[:, :, i].astype(jnp.float32) for i in range(3))
        q = q / (jnp.linalg.norm(q, axis=1, keepdims=True) + 1e-6)
        k = k / (jnp.linalg.norm(k, axis=1, keepdims=True) + 1e-6)
        temperature = self.param("temperature", nn.initializers.ones, (self.heads, 1, 1))
        attn = jax.nn.softmax(jnp.einsum("bnhi,bnhj->bhij", q, k) * temperature, axis=-1)
        y = jnp.einsum("bhij,bnhj->bnhi", attn, v).reshape(b, h, w, c).astype(x.dtype)
        x = x + layer_scale(self, "gamma_attn", Conv(c, 1, dtype=self.dtype, name="proj")(y))
        y = nn.LayerNorm(dtype=self.dtype, name="norm2")(x)
        y = nn.gelu(Conv(c * self.expansion, 1, dtype=self.dtype, name="mlp1")(y))
        return x + layer_scale(self, "gamma_mlp", Conv(c, 1, dtype=self.dtype, name="mlp2")(y))


class LiteEncoder(nn.Module):
    """`[B, H, W, 3] -> [f_1/2, f_1/4, f_1/8, f_1/16]` with (stem_width, *widths) channels."""

    stem_width: int = 48
    widths: Sequence[int] = (48, 80, 128)
    depths: Sequence[int] = (4, 4, 8)
    dilations: Sequence[Sequence[int]] = ((1, 2, 3), (1, 2, 3), (1, 2, 3, 1, 2, 3, 2, 4))
    expansion: int = 6
    global_blocks: int = 1
    heads: int = 8
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> list[Array]:
        x = (x - MONODEPTH2_MEAN) / MONODEPTH2_STD
        x = Conv(self.stem_width, 3, 2, 1, use_bias=False, dtype=self.dtype, name="stem_0")(x)
        x = nn.gelu(batch_norm(train, "stem_0_bn", self.dtype)(x))
        x = Conv(self.stem_width, 3, 1, 1, use_bias=False, dtype=self.dtype, name="stem_1")(x)
        x = nn.gelu(batch_norm(train, "stem_1_bn", self.dtype)(x))
        features = [x]
        for s, (width, depth) in enumerate(zip(self.widths, self.depths)):
            x = Conv(width, 3, 2, 1, use_bias=False, dtype=self.dtype, name=f"down_{s}")(x)
            x = batch_norm(train, f"down_{s}_bn", self.dtype)(x)
            dil = self.dilations[s]
            n_local = depth - self.global_blocks
            for i in range(depth):
                x = DilatedBlock(
                    dil[i % len(dil)], self.expansion, self.dtype, name=f"stage{s}_block{i}"
                )(x, train)
                if i >= n_local:
                    x = ChannelAttention(
                        self.heads, self.expansion, self.dtype, name=f"stage{s}_attn{i}"
                    )(x)
            features.append(x)
        return features


class LiteDepthNet(nn.Module):
    """Light DepthNet: `(image [B, H, W, 3] in [0, 1], train) -> [disp_s [B, H/2^s, W/2^s, 1]]`.

    H and W must be multiples of 16; disparities are sigmoid outputs in fp32, scale 0 first.
    """

    stem_width: int = 48
    widths: Sequence[int] = (48, 80, 128)
    depths: Sequence[int] = (4, 4, 8)
    dilations: Sequence[Sequence[int]] = ((1, 2, 3), (1, 2, 3), (1, 2, 3, 1, 2, 3, 2, 4))
    expansion: int = 6
    global_blocks: int = 1
    heads: int = 8
    decoder_channels: Sequence[int] = (16, 32, 64, 128)
    scales: Sequence[int] = (0, 1, 2)
    dtype: Any = None

    @nn.compact
    def __call__(self, image: Array, train: bool) -> list[Array]:
        features = LiteEncoder(
            self.stem_width,
            self.widths,
            self.depths,
            tuple(tuple(d) for d in self.dilations),
            self.expansion,
            self.global_blocks,
            self.heads,
            self.dtype,
            name="encoder",
        )(image, train)
        return DepthDecoder(self.decoder_channels, self.scales, self.dtype, name="decoder")(
            features
        )
