"""Relative depth, the light 3-scale DepthNet (Lite-Mono-like, ~3 M parameters) + PoseNet.

As configs/monodepth2.py, with scales 1, 1/2, 1/4 (paper footnote 4) and Lite-Mono's AdamW with
weight decay 1e-2 (docs/reference.md). `:tiny` for a CPU run.
"""

import ml_collections

from avs_jax.config_files import load_config_module


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return load_config_module("monodepth2").relative_config("lite", arg)
