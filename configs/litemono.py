"""Relative depth, the light 3-scale DepthNet (Lite-Mono-like, ~3 M parameters) + PoseNet.

As configs/monodepth2.py, with scales 1, 1/2, 1/4 (paper footnote 4) and Lite-Mono's AdamW with
weight decay 1e-2 (REFERENCE.md). `:tiny` for a CPU run.
"""

import importlib.util
import os

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        "monodepth2_config", os.path.join(os.path.dirname(__file__), "monodepth2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.relative_config("lite", arg)
