"""The experiment configs under configs/, loaded by file path as `--config=configs/NAME.py` does."""

import importlib.util
from pathlib import Path

import ml_collections

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load_config(name: str, arg: str = "") -> ml_collections.ConfigDict:
    """`configs/<name>.py`'s `get_config(arg)`."""
    spec = importlib.util.spec_from_file_location(f"configs_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
