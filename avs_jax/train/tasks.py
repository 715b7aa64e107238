"""The stages' Task objects by name, importable without the data stack (grain, TFDS).

`config.task` picks the stage: "avsnet" (stage 1, AVS-Net / Only-RGB / echo-only on BV2, SILog)
or "relative" (DepthNet + PoseNet on BV1 triples, photometric). The benchmarks and the
checkpoint loader build a Task from a config alone; training (avs_jax/train/run.py) adds the data.
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections

from avs_jax.errors import BadInputError

# config.task -> "module:class"; the class takes the whole config.
TASKS = {
    "avsnet": "avs_jax.train.avsnet_task:AVSNetTask",
    "relative": "avs_jax.train.relative_task:RelativeDepthTask",
}


def make_task(config: ml_collections.ConfigDict) -> Any:
    """The Task object of `config.task`."""
    if config.task not in TASKS:
        raise BadInputError(f"config.task must be one of {sorted(TASKS)}, got {config.task!r}")
    module, cls = TASKS[config.task].split(":")
    return getattr(importlib.import_module(module), cls)(config)
