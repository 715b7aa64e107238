"""Monodepth2's DepthNet: ResNet-18 encoder + multi-scale sigmoid-disparity decoder.

The relative-depth model R of AVS-Net (paper Sec. 3.2.1, Fig. 4) follows Monodepth2
(docs/reference.md, "Monodepth2"): the encoder sees `(x − 0.45) / 0.225`; the decoder climbs the
pyramid with ConvBlocks (reflection pad 1, 3×3 conv, ELU), nearest ×2 upsampling and skip
concatenation, and at each output scale a reflection-padded 3×3 conv + sigmoid gives a disparity.

Parameter names mirror Monodepth2's decoder keys (`("upconv", i, j)` → `upconv_{i}_{j}`,
`("dispconv", s)` → `dispconv_{s}`) and torchvision's for the encoder, so that released weights
import by name.

avs_jax/models/relative_model.py builds the relative stage's networks from `config.model`.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from avs_jax.models.layers import (
    MONODEPTH2_MEAN,
    MONODEPTH2_STD,
    Conv,
    reflect_pad,
    torch_default_init,
    upsample_nearest,
)
from avs_jax.models.resnet import ResNet18

Array = jax.Array


class ConvBlock(nn.Module):
    """Reflection pad 1 + 3×3 conv + ELU (Monodepth2's ConvBlock), `[B,H,W,C] -> [B,H,W,features]`."""

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = Conv(
            self.features, 3, 1, 0, dtype=self.dtype, kernel_init=torch_default_init, name="conv"
        )(reflect_pad(x))
        return nn.elu(x)


class DepthDecoder(nn.Module):
    """Monodepth2's depth decoder over any encoder pyramid.

    Attributes:
      num_ch_dec: decoder channels per level, finest first ((16, 32, 64, 128, 256) in
        Monodepth2); one level per encoder feature.
      scales: output scales (0 = full input resolution).

    Call: features `[B, H/2^(l+1), W/2^(l+1), C_l]` for l = 0 … L−1 (as ResNet18 returns) → list of
    disparities `[B, H/2^s, W/2^s, 1]` in (0, 1), float32, one per scale in `scales`, ascending.
    """

    num_ch_dec: Sequence[int] = (16, 32, 64, 128, 256)
    scales: Sequence[int] = (0, 1, 2, 3)
    dtype: Any = None

    @nn.compact
    def __call__(self, features: Sequence[Array]) -> list[Array]:
        if len(features) != len(self.num_ch_dec):
            raise ValueError(
                f"DepthDecoder: {len(features)} encoder features but "
                f"{len(self.num_ch_dec)} decoder channels {tuple(self.num_ch_dec)}"
            )
        outputs = {}
        x = features[-1]
        for i in range(len(self.num_ch_dec) - 1, -1, -1):
            x = ConvBlock(self.num_ch_dec[i], self.dtype, name=f"upconv_{i}_0")(x)
            x = upsample_nearest(x)
            if i > 0:
                x = jnp.concatenate([x, features[i - 1].astype(x.dtype)], axis=-1)
            x = ConvBlock(self.num_ch_dec[i], self.dtype, name=f"upconv_{i}_1")(x)
            if i in self.scales:
                logits = Conv(
                    1,
                    3,
                    1,
                    0,
                    dtype=self.dtype,
                    kernel_init=torch_default_init,
                    name=f"dispconv_{i}",
                )(reflect_pad(x))
                # Disparities feed fp32 geometry and losses.
                outputs[i] = nn.sigmoid(logits.astype(jnp.float32))
        return [outputs[s] for s in sorted(self.scales)]


class DepthNet(nn.Module):
    """Monodepth2 DepthNet: `(image [B, H, W, 3] in [0, 1], train)` → disparities per scale,
    `[B, H/2^s, W/2^s, 1]` in (0, 1), scale 0 first.

    H and W must be multiples of 32. Attributes: encoder widths/blocks (ResNet-18 by default,
    narrower for CPU tests), decoder channels, output scales, compute dtype (bf16-safe: outputs
    are fp32).
    """

    encoder_widths: Sequence[int] = (64, 64, 128, 256, 512)
    encoder_blocks: Sequence[int] = (2, 2, 2, 2)
    decoder_channels: Sequence[int] = (16, 32, 64, 128, 256)
    scales: Sequence[int] = (0, 1, 2, 3)
    dtype: Any = None

    @nn.compact
    def __call__(self, image: Array, train: bool) -> list[Array]:
        features = ResNet18(
            self.encoder_widths,
            self.encoder_blocks,
            MONODEPTH2_MEAN,
            MONODEPTH2_STD,
            self.dtype,
            name="encoder",
        )(image, train)
        return DepthDecoder(self.decoder_channels, self.scales, self.dtype, name="decoder")(
            features
        )
