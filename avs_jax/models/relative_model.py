"""The relative-depth stage's networks from `config.model`: which depth network, at which size.

`relative_model_config(name, size)` and `build_depth_net(config)` are the one place where
`config.model.name` ("monodepth2": DepthNet; "lite": Lite-Mono's LiteDepthNet) selects the
network; `build_pose_net` gives the pose network both share (Monodepth2's separate ResNet-18).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from avs_jax.models.depthnet import DepthNet
from avs_jax.models.lite_depthnet import LiteDepthNet, default_lite_config
from avs_jax.models.posenet import POSE_OUTPUT_SCALE, PoseNet

_SIZES = ("full", "tiny")


def relative_model_config(
    name: str = "monodepth2", size: str = "full"
) -> ml_collections.ConfigDict:
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
        c.update(default_lite_config(size))
        c.scales = (0, 1, 2)  # Lite-Mono: 3 scales (docs/reference.md)
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
        return DepthNet(
            tuple(model.encoder_widths),
            tuple(model.encoder_blocks),
            tuple(model.decoder_channels),
            tuple(model.scales),
            dtype,
        )
    if model.name == "lite":
        return LiteDepthNet(
            stem_width=model.stem_width,
            widths=tuple(model.widths),
            depths=tuple(model.depths),
            dilations=tuple(model.dilations),
            expansion=model.expansion,
            global_blocks=model.global_blocks,
            heads=model.heads,
            decoder_channels=tuple(model.decoder_channels),
            scales=tuple(model.scales),
            dtype=dtype,
        )
    raise ValueError(f"config.model.name {model.name!r}: expected 'monodepth2' or 'lite'")


def build_pose_net(model: ml_collections.ConfigDict) -> nn.Module:
    """The pose network of the relative-depth stage (the same for both depth networks)."""
    return PoseNet(
        tuple(model.pose_encoder_widths),
        tuple(model.pose_encoder_blocks),
        model.pose_hidden,
        rotation_scale=model.get("pose_rotation_scale", POSE_OUTPUT_SCALE),
        dtype=_dtype(model.dtype),
    )
