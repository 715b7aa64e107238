"""Monodepth2's released files -> avs_jax.models.depthnet.DepthNet and posenet.PoseNet.

Monodepth2 (nianticlabs) released files: encoder.pth / pose_encoder.pth hold a ResnetEncoder
(keys "encoder.<torchvision name>", plus the training "height", "width", "use_stereo"),
depth.pth a DepthDecoder whose modules sit in one nn.ModuleList "decoder" in the insertion
order of its OrderedDict: ("upconv", i, 0), ("upconv", i, 1) for i = L-1 … 0, then
("dispconv", s) for each scale; pose.pth a PoseDecoder with ModuleList "net" = [squeeze,
pose 0, pose 1, pose 2]. ConvBlock = Conv3x3 (pad + "conv") + ELU, so an upconv's weight is
"decoder.N.conv.conv.weight" and a dispconv's (a bare Conv3x3) "decoder.N.conv.weight".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.layouts import adapt_input_channels
from avs_jax.import_weights.mapping import (
    Rule,
    Variables,
    map_state_dict,
    model_template,
    prefixed_rules,
)
from avs_jax.import_weights.readers import read_state_dict
from avs_jax.import_weights.resnet import RESNET18_RULES

MONODEPTH2_SKIP = (r"encoder\.fc\..*", r"height", r"width", r"use_stereo")


def monodepth2_depth_rules(num_levels: int, scales: Sequence[int]) -> tuple[Rule, ...]:
    """Rules from avs_jax.models.depthnet.DepthNet to Monodepth2's encoder.pth + depth.pth keys."""
    scales = sorted(scales)

    def upconv(m: re.Match) -> str:
        i, j = int(m.group(1)), int(m.group(2))
        return f"decoder.{2 * (num_levels - 1 - i) + j}.conv.conv"

    def dispconv(m: re.Match) -> str:
        return f"decoder.{2 * num_levels + scales.index(int(m.group(1)))}.conv"

    return prefixed_rules(RESNET18_RULES, "encoder", "encoder") + (
        Rule(r"decoder/upconv_(\d+)_(\d+)/conv", upconv),
        Rule(r"decoder/dispconv_(\d+)", dispconv),
    )


MONODEPTH2_POSE_RULES = prefixed_rules(RESNET18_RULES, "encoder", "encoder") + (
    Rule(r"decoder/squeeze", "net.0"),
    Rule(r"decoder/pose_(\d)", lambda m: f"net.{int(m.group(1)) + 1}"),
)


def import_monodepth2_depth(
    encoder_sd: Mapping[str, np.ndarray],
    depth_sd: Mapping[str, np.ndarray],
    template: Variables,
    what: str = "monodepth2 encoder.pth + depth.pth",
) -> tuple[Variables, list[str]]:
    """Monodepth2 encoder.pth + depth.pth -> avs_jax.models.depthnet.DepthNet variables.

    The two files do not share key prefixes ("encoder." vs "decoder."), so they are read as one
    state dict. The scales and the number of decoder levels come from the template.
    """
    dec = template["params"]["decoder"]
    num_levels = sum(1 for k in dec if re.fullmatch(r"upconv_\d+_0", k))
    scales = [int(k.split("_")[1]) for k in dec if k.startswith("dispconv_")]
    in_channels = template["params"]["encoder"]["conv1"]["kernel"].shape[2]
    sd = {**encoder_sd, **depth_sd}
    return map_state_dict(
        sd,
        template,
        monodepth2_depth_rules(num_levels, scales),
        MONODEPTH2_SKIP,
        {"encoder.conv1.weight": lambda w: adapt_input_channels(w, in_channels)},
        what,
    )


def import_monodepth2_pose(
    encoder_sd: Mapping[str, np.ndarray],
    pose_sd: Mapping[str, np.ndarray],
    template: Variables,
    what: str = "monodepth2 pose_encoder.pth + pose.pth",
) -> tuple[Variables, list[str]]:
    """Monodepth2 pose_encoder.pth + pose.pth -> avs_jax.models.posenet.PoseNet variables.

    The released pose encoder already has the 6-channel stem; an encoder file with ImageNet's
    3-channel stem in its place gets the duplicated-and-halved stem (`adapt_input_channels`). Its
    keys are Monodepth2's ResnetEncoder's ("encoder.conv1.weight"): torchvision's own
    resnet18 file ("conv1.weight") is refused until saved under that prefix.
    """
    in_channels = template["params"]["encoder"]["conv1"]["kernel"].shape[2]
    sd = {**encoder_sd, **pose_sd}
    return map_state_dict(
        sd,
        template,
        MONODEPTH2_POSE_RULES,
        MONODEPTH2_SKIP,
        {"encoder.conv1.weight": lambda w: adapt_input_channels(w, in_channels)},
        what,
    )


def cli_monodepth2(paths: Sequence[Path], args: Any) -> dict[str, tuple[Variables, list[str]]]:
    """Monodepth2's released files, told apart by their names as released: encoder.pth +
    depth.pth -> OUT/depth (DepthNet), pose_encoder.pth + pose.pth -> OUT/pose (PoseNet)."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.depthnet import DepthNet  # pylint: disable=import-outside-toplevel
    from avs_jax.models.posenet import PoseNet  # pylint: disable=import-outside-toplevel

    by_stem = {p.stem: p for p in paths}
    unknown = set(by_stem) - {"encoder", "depth", "pose_encoder", "pose"}
    if unknown:
        raise WeightImportError(
            f"--source=monodepth2: unknown files {sorted(unknown)}; expected "
            "encoder.*, depth.*, pose_encoder.*, pose.* (as released)"
        )
    out = {}
    if {"encoder", "depth"} <= set(by_stem):
        template = model_template(DepthNet(), jnp.zeros((1, 64, 64, 3)), train=False)
        out["depth"] = import_monodepth2_depth(
            read_state_dict(by_stem["encoder"]),
            read_state_dict(by_stem["depth"]),
            template,
            f"{by_stem['encoder']} + {by_stem['depth']}",
        )
    if {"pose_encoder", "pose"} <= set(by_stem):
        template = model_template(PoseNet(), jnp.zeros((1, 64, 64, 6)), train=False)
        out["pose"] = import_monodepth2_pose(
            read_state_dict(by_stem["pose_encoder"]),
            read_state_dict(by_stem["pose"]),
            template,
            f"{by_stem['pose_encoder']} + {by_stem['pose']}",
        )
    if not out or len(out) * 2 != len(by_stem):
        raise WeightImportError(
            "--source=monodepth2 needs encoder + depth and/or pose_encoder + "
            f"pose files, got {sorted(by_stem)}"
        )
    return out
