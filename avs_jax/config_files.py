"""The experiment configs under configs/, loaded by file path as `--config=configs/NAME.py` does.

configs/ is not a package (ml_collections' config flag execs each file by path), so configs that
build on a sibling, the tests and the benchmarks all load them through here. `differences`
compares two configs as saved (a resumed run's against the current one).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import ml_collections

from avs_jax.errors import MissingInputError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load_config_module(name: str) -> ModuleType:
    """The module `configs/<name>.py`, executed (for helpers beside its `get_config`)."""
    return exec_config_file(CONFIGS / f"{name}.py")


def exec_config_file(path: str | Path) -> ModuleType:
    """The config file at `path`, executed as a module (ml_collections loads them by path too)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location(f"configs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(name: str, arg: str = "") -> ml_collections.ConfigDict:
    """`configs/<name>.py`'s `get_config(arg)`."""
    return load_config_module(name).get_config(arg)


def differences(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like trees, as "key: old -> new".

    A key missing on one side reads "<unset>" there. Compare trees as JSON gives them back
    (`json.loads(config.to_json_best_effort())`): a tuple and a list then compare equal.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += differences(old.get(k, "<unset>"), new.get(k, "<unset>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]
