"""`mode="train"`: trains the stage a config names, on the shared core.

`config.task` picks the stage's Task (avs_jax/train/tasks.py). Everything else (model sizes,
data, optimiser) is in the config; this module only wires data, task and core together.
"""

from __future__ import annotations

import functools
from typing import Iterator

import jax
import ml_collections
from absl import logging

from avs_jax import canonical_camera
from avs_jax.data import datasets, input_pipeline
from avs_jax.errors import BadInputError
from avs_jax.train import loop
from avs_jax.train.distributed import maybe_initialize_distributed
from avs_jax.train.interrupts import raise_if_interrupted
from avs_jax.train.tasks import make_task

# Host-only entries of evaluation batches that validation does not need.
_HOST_ONLY = ("sample_id", "depth_full", "focal")


def _validation_batches(dataset) -> Iterator[dict]:
    for batch in dataset:
        yield {k: v for k, v in batch.items() if k not in _HOST_ONLY}


def check_batch_divides(batch_size: int, n_devices: int, platform: str) -> None:
    """The global batch must split evenly over the devices; said before anything compiles."""
    if batch_size % n_devices:
        lower = batch_size - batch_size % n_devices
        options = f"{lower} or {lower + n_devices}" if lower else f"{n_devices}"
        raise BadInputError(
            f"config.data.batch_size={batch_size} does not split over the {n_devices} "
            f"{platform} devices: use a multiple of {n_devices} (e.g. {options})"
        )


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains `config.task` on `config.data` into `workdir`; resumes from its checkpoints.

    Raises interrupts.TrainingInterrupted when a signal stopped it (its checkpoint is saved).
    """
    # First: the input pipeline below asks JAX for the process index, which starts the backend,
    # after which jax.distributed refuses to initialise.
    maybe_initialize_distributed(config.distributed)
    check_batch_divides(config.data.batch_size, jax.device_count(), jax.default_backend())
    builder = datasets.open_dataset(config.data)
    n_train = datasets.split_size(builder, "train")
    if n_train < config.data.batch_size:
        raise BadInputError(
            f"batvision/{config.data.name} has {n_train} training examples, fewer "
            f"than one batch of {config.data.batch_size}"
        )
    steps_per_epoch = n_train // config.data.batch_size
    record_camera = None
    if config.task == "avsnet" and jax.process_index() == 0:
        # The camera stage 1 learns with, for the canonical camera of evaluation and prediction;
        # recorded once the workdir is this run's (a refused second run leaves it alone).
        record_camera = functools.partial(canonical_camera.record_run_focal, workdir, config.data)
    has_val = datasets.split_size(builder, "val") > 0
    logging.info(
        "training %s on batvision/%s: %d examples, %d steps per epoch",
        config.task,
        config.data.name,
        n_train,
        steps_per_epoch,
    )
    task = make_task(config)
    # One dataset object for every validation, so that `data.cache_decoded` keeps its examples.
    val = input_pipeline.make_eval_dataset(builder, config.data, "val") if has_val else None
    out = loop.train_and_evaluate(
        config,
        workdir,
        task,
        train_iter_fn=lambda: input_pipeline.create_train_iterator(builder, config.data),
        eval_iter_fn=(lambda: _validation_batches(val)) if has_val else None,
        steps_per_epoch=steps_per_epoch,
        on_start=record_camera,
    )
    raise_if_interrupted(out, workdir)
    return out
