"""Checks of an experiment config before anything compiles: clear errors at the boundary."""

from __future__ import annotations

import os
from typing import Callable

import ml_collections

from avs_jax.errors import InputError

MODES = ("train", "evaluate", "quickstart", "sim_pretrain")
ALIGN_MODES = ("onset", "off")  # config.data.stft.align (avs_jax/data/config.py)


class ConfigError(InputError, ValueError):
    """An experiment config that cannot run; the message says which field and why."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_path(config: ml_collections.ConfigDict, dotted: str, must_exist: bool = True) -> None:
    node = config
    for part in dotted.split("."):
        if part not in node:
            return
        node = node[part]
    if node and must_exist:
        _require(os.path.exists(node), f"config.{dotted}: no such file or directory: {node}")


def check_common(config: ml_collections.ConfigDict) -> None:
    """Checks every mode shares: the mode, seeds, sizes and paths."""
    _require("mode" in config, "config has no 'mode' field (one of %s)" % (MODES,))
    _require(config.mode in MODES, f"config.mode must be one of {MODES}, got {config.mode!r}")
    if "data" in config:
        data = config.data
        if "batch_size" in data:
            _require(
                data.batch_size > 0, f"config.data.batch_size must be > 0, got {data.batch_size}"
            )
        if "image_size" in data:
            h, w = data.image_size
            _require(h > 0 and w > 0, f"config.data.image_size must be positive, got {(h, w)}")
        if "max_depth" in data:
            _require(data.max_depth > 0, f"config.data.max_depth must be > 0, got {data.max_depth}")
        _check_path(config, "data.manual_dir")
        workers = data.get("num_workers", 0)
        _require(
            isinstance(workers, int) and workers >= -1,
            "config.data.num_workers must be an integer >= 0, or -1 for one per free core, "
            f"got {workers!r}",
        )
        if "stft" in data and "align" in data.stft:
            _require(
                data.stft.align in ALIGN_MODES,
                f"config.data.stft.align must be one of {ALIGN_MODES}, got {data.stft.align!r}",
            )
            onset = data.stft.get("onset", 0)
            _require(
                isinstance(onset, int) and onset >= 0,
                f"config.data.stft.onset must be an integer >= 0 (a sample index), got {onset!r}",
            )
    if "min_depth" in config and config.mode == "evaluate":
        # Predictions are clipped to it before log(pred): 0 would make RMSE log infinite.
        _require(config.min_depth > 0, f"config.min_depth must be > 0, got {config.min_depth}")
    if "model" in config and "min_depth" in config.model and "max_depth" in config.model:
        _require(
            0 < config.model.min_depth < config.model.max_depth,
            "config.model needs 0 < min_depth < max_depth, got "
            f"{config.model.min_depth}, {config.model.max_depth}",
        )
    if "model" in config and "pose_rotation_scale" in config.model:
        # 0 would freeze the pose net's rotation at none, a sign would mirror it.
        _require(
            config.model.pose_rotation_scale > 0,
            f"config.model.pose_rotation_scale must be > 0, got {config.model.pose_rotation_scale}",
        )
    if "train" in config:
        for key in ("learning_rate", "num_epochs", "log_every"):
            if key in config.train and config.train[key] is not None:
                _require(
                    config.train[key] > 0,
                    f"config.train.{key} must be > 0, got {config.train[key]}",
                )
        prefetch = config.train.get("prefetch_to_device", 0)
        _require(
            isinstance(prefetch, int) and prefetch >= 0,
            f"config.train.prefetch_to_device must be an integer >= 0, got {prefetch!r}",
        )
    for item in str(config.get("init_from") or "").split(","):
        path = item.strip().partition(":")[0]
        _require(
            not path or os.path.exists(path),
            f"config.init_from: no such pretrained checkpoint: {path}",
        )


def check_quickstart_seeds(config: ml_collections.ConfigDict) -> None:
    """The quickstart's rooms (seeds `seed`, `seed + 1`) are none of its held-out sets' (each
    set's seed and + 1) nor, when it starts from the shipped weights, of their corpora: a room
    drawn again under its seed would be a test room the models have seen."""
    from avs_jax.sim_pretrain import ASSETS, SHIPPED_SEED

    own = {config.seed, config.seed + 1}
    others = {}
    held = config.get("heldout")
    if held is not None and held.enabled:
        for name, s in held.sets.items():
            others[f"held-out set {name!r}"] = {int(s.seed), int(s.seed) + 1}
    shipped = [
        run
        for run in ("stage1", "relative")
        if run in config and str(config[run].get("init_from") or "").startswith(ASSETS)
    ]
    if shipped:
        others[f"the corpora of the shipped weights ({', '.join(shipped)})"] = {
            SHIPPED_SEED + k for k in range(3)
        }
    for what, seeds in others.items():
        shared = sorted(own & seeds)
        _require(
            not shared,
            f"config.seed={config.seed}: the quickstart simulates its rooms with seeds "
            f"{sorted(own)}, and {what} with {sorted(seeds)}: seed(s) {shared} would make the "
            "same rooms, so the models would be tested on rooms they trained on; choose "
            "another config.seed",
        )


# Extra checks a mode registers: mode -> list of functions raising ConfigError.
EXTRA_CHECKS: dict[str, list[Callable[[ml_collections.ConfigDict], None]]] = {
    "quickstart": [check_quickstart_seeds],
}


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError with a message naming the field when `config` cannot run."""
    check_common(config)
    for check in EXTRA_CHECKS.get(config.mode, []):
        check(config)
