"""torchvision ResNet-18 -> avs_jax.models.resnet.ResNet18 (the encoders of every network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.layouts import adapt_input_channels
from avs_jax.import_weights.mapping import Rule, Variables, map_state_dict, model_template
from avs_jax.import_weights.readers import read_state_dict

# torchvision ResNet-18 <-> avs_jax.models.resnet.ResNet18 (module names follow torchvision).
RESNET18_RULES = (
    Rule(r"conv1", "conv1"),
    Rule(r"bn1", "bn1"),
    Rule(r"layer(\d+)_(\d+)/downsample_conv", r"layer\1.\2.downsample.0"),
    Rule(r"layer(\d+)_(\d+)/downsample_bn", r"layer\1.\2.downsample.1"),
    Rule(r"layer(\d+)_(\d+)/(\w+)", r"layer\1.\2.\3"),
)
# The ImageNet classifier is not part of the feature extractor.
RESNET18_SKIP = (r"fc\..*",)


def import_resnet18(
    state_dict: Mapping[str, np.ndarray], template: Variables, what: str = "resnet18"
) -> tuple[Variables, list[str]]:
    """torchvision ResNet-18 state dict -> ResNet18 variables (fc skipped; stem adapted to the
    template's input channels with `adapt_input_channels`)."""
    in_channels = template["params"]["conv1"]["kernel"].shape[2]
    return map_state_dict(
        state_dict,
        template,
        RESNET18_RULES,
        RESNET18_SKIP,
        {"conv1.weight": lambda w: adapt_input_channels(w, in_channels)},
        what,
    )


def cli_resnet18(paths: Sequence[Path], args: Any) -> tuple[Variables, list[str]]:
    """`--source=resnet18`: one torchvision file -> ResNet18 variables with `--in_channels` and
    `--widths`."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.resnet import ResNet18  # pylint: disable=import-outside-toplevel

    if len(paths) != 1:
        raise WeightImportError(f"--source=resnet18 takes one file, got {len(paths)}")
    widths = tuple(int(w) for w in args.widths.split(","))
    template = model_template(
        ResNet18(widths=widths), jnp.zeros((1, 64, 64, args.in_channels)), train=False
    )
    return import_resnet18(read_state_dict(paths[0]), template, str(paths[0]))
