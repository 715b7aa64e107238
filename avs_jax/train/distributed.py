"""Several hosts: `jax.distributed.initialize()` from the config or the environment."""

from __future__ import annotations

import os

import jax
import ml_collections
from absl import logging

from avs_jax.errors import BadInputError


def _int_from_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInputError(
            f"environment variable {name}={value!r}: expected an integer "
            "(see README, 'Several hosts')"
        ) from None


def maybe_initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
    """`jax.distributed.initialize()` when config.distributed.multi_host; before any device use.

    Each empty/negative field is taken from the JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID environment variables when set, else left to JAX's cluster auto-detection
    (SLURM, Open MPI, TPU pods). A second call (the train loop's, after the stage's own) does
    nothing.
    """
    if not cfg.multi_host or jax.distributed.is_initialized():
        return
    kwargs = {}
    if cfg.coordinator_address:
        kwargs["coordinator_address"] = cfg.coordinator_address
    # jax.distributed reads JAX_COORDINATOR_ADDRESS itself but not the other two (jax 0.10: the
    # process count and id come from its arguments or a detected cluster only).
    num_processes = (
        cfg.num_processes if cfg.num_processes > 0 else _int_from_env("JAX_NUM_PROCESSES")
    )
    process_id = cfg.process_id if cfg.process_id >= 0 else _int_from_env("JAX_PROCESS_ID")
    if num_processes is not None:
        kwargs["num_processes"] = num_processes
    if process_id is not None:
        kwargs["process_id"] = process_id
    jax.distributed.initialize(**kwargs)
    logging.info(
        "jax.distributed: process %d of %d, %d devices in all",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
    )
