"""Monodepth2's DepthNet: ResNet-18 encoder + multi-scale sigmoid-disparity decoder.

The relative-depth model R of AVS-Net (paper Sec. 3.2.1, Fig. 4) follows Monodepth2
(REFERENCE.md, "Monodepth2"): the encoder sees `(x − 0.45) / 0.225`; the decoder climbs the
pyramid with ConvBlocks (reflection pad 1, 3×3 conv, ELU), nearest ×2 upsampling and skip
concatenation, and at each output scale a reflection-padded 3×3 conv + sigmoid gives a disparity.

Parameter names mirror Monodepth2's decoder keys (`("upconv", i, j)` → `upconv_{i}_{j}`,
`("dispconv", s)` → `dispconv_{s}`) and torchvision's for the encoder, so that released weights
import by name.

`default_model_config(name, size)` and `build_depth_net(config)` are the one place where
`config.model.name` ("monodepth2" or "lite") selects the network.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from avs_jax.models.layers import Conv, upsample_nearest
from avs_jax.models.resnet import ResNet18

Array = jax.Array

# Monodepth2's encoder input normalisation (REFERENCE.md): (x − 0.45) / 0.225.
MONODEPTH2_MEAN = 0.45
MONODEPTH2_STD = 0.225

# PyTorch's default Conv2d initialisation, which Monodepth2's decoders keep:
# kaiming_uniform(a=√5) = U(±1/√fan_in), i.e. variance 1/(3·fan_in). (Biases start at zero here.)
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def reflect_pad(x: Array, pad: int = 1) -> Array:
    """Reflection padding of `[B, H, W, C]` (PyTorch's ReflectionPad2d)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ConvBlock(nn.Module):
    """Reflection pad 1 + 3×3 conv + ELU (Monodepth2's ConvBlock), `[B,H,W,C] -> [B,H,W,features]`.
    """

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = Conv(self.features, 3, 1, 0, dtype=self.dtype, kernel_init=torch_default_init,
                 name="conv")(reflect_pad(x))
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
            raise ValueError(f"DepthDecoder: {len(features)} encoder features but "
                             f"{len(self.num_ch_dec)} decoder channels {tuple(self.num_ch_dec)}")
        outputs = {}
        x = features[-1]
        for i in range(len(self.num_ch_dec) - 1, -1, -1):
            x = ConvBlock(self.num_ch_dec[i], self.dtype, name=f"upconv_{i}_0")(x)
            x = upsample_nearest(x)
            if i > 0:
                x = jnp.concatenate([x, features[i - 1].astype(x.dtype)], axis=-1)
            x = ConvBlock(self.num_ch_dec[i], self.dtype, name=f"upconv_{i}_1")(x)
            if i in self.scales:
                logits = Conv(1, 3, 1, 0, dtype=self.dtype, kernel_init=torch_default_init,
                              name=f"dispconv_{i}")(reflect_pad(x))
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
        features = ResNet18(self.encoder_widths, self.encoder_blocks, MONODEPTH2_MEAN,
                            MONODEPTH2_STD, self.dtype, name="encoder")(image, train)
        return DepthDecoder(self.decoder_channels, self.scales, self.dtype,
                            name="decoder")(features)


# ------------------------------------------------------------------------------------------
# Configuration: which depth network, at which size.

_SIZES = ("full", "tiny")


def default_model_config(name: str = "monodepth2", size: str = "full") -> ml_collections.ConfigDict:
    """config.model for the relative-depth stage: `name` in {"monodepth2", "lite"}, `size` in
    {"full" (paper), "tiny" (CPU tests)}. The pose network (same for both) is part of it."""
    if size not in _SIZES:
        raise ValueError(f"model size {size!r}: expected one of {_SIZES}")
    c = ml_collections.ConfigDict()
    c.name = name
    c.dtype = "float32"
    if name == "monodepth2":
        c.encoder_widths = (64, 64, 128, 256, 512)  # ResNet-18
        c.encoder_blocks = (2, 2, 2, 2)
        c.decoder_channels = (16, 32, 64, 128, 256)  # Monodepth2 num_ch_dec
        c.scales = (0, 1, 2, 3)  # Monodepth2 options.py
        if size == "tiny":
            c.encoder_widths = (8, 8, 16, 16, 32)
            c.encoder_blocks = (1, 1, 1, 1)
            c.decoder_channels = (4, 8, 8, 16, 16)
    elif name == "lite":
        from avs_jax.models.lite_depthnet import default_lite_config
        c.update(default_lite_config(size))
        c.scales = (0, 1, 2)  # Lite-Mono: 3 scales (REFERENCE.md)
    else:
        raise ValueError(f"config.model.name {name!r}: expected 'monodepth2' or 'lite'")
    # Pose network: a separate ResNet-18 on frame pairs (Monodepth2 "separate_resnet").
    c.pose_encoder_widths = (64, 64, 128, 256, 512)
    c.pose_encoder_blocks = (2, 2, 2, 2)
    c.pose_hidden = 256
    c.pose_rotation_scale = 0.01  # Monodepth2's x0.01 on the axis-angle output
    if size == "tiny":
        c.pose_encoder_widths = (8, 8, 16, 16, 32)
        c.pose_encoder_blocks = (1, 1, 1, 1)
        c.pose_hidden = 16
    return c


def _dtype(name: str) -> Any:
    try:
        return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]
    except KeyError:
        raise ValueError(f"config.model.dtype {name!r}: expected float32, bfloat16 or float16")


def build_depth_net(model: ml_collections.ConfigDict) -> nn.Module:
    """The depth network named by `config.model.name`."""
    dtype = _dtype(model.dtype)
    if model.name == "monodepth2":
        return DepthNet(tuple(model.encoder_widths), tuple(model.encoder_blocks),
                        tuple(model.decoder_channels), tuple(model.scales), dtype)
    if model.name == "lite":
        from avs_jax.models.lite_depthnet import LiteDepthNet
        return LiteDepthNet(stem_width=model.stem_width, widths=tuple(model.widths),
                            depths=tuple(model.depths), dilations=tuple(model.dilations),
                            expansion=model.expansion, global_blocks=model.global_blocks,
                            heads=model.heads, decoder_channels=tuple(model.decoder_channels),
                            scales=tuple(model.scales), dtype=dtype)
    raise ValueError(f"config.model.name {model.name!r}: expected 'monodepth2' or 'lite'")


def build_pose_net(model: ml_collections.ConfigDict) -> nn.Module:
    """The pose network of the relative-depth stage (the same for both depth networks)."""
    from avs_jax.models.posenet import POSE_OUTPUT_SCALE, PoseNet
    return PoseNet(tuple(model.pose_encoder_widths), tuple(model.pose_encoder_blocks),
                   model.pose_hidden,
                   rotation_scale=model.get("pose_rotation_scale", POSE_OUTPUT_SCALE),
                   dtype=_dtype(model.dtype))
