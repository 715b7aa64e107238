"""`mode="train"`: trains the stage a config names, on the shared core.

`config.task` picks the stage's Task (avs_jax/train/tasks.py). Everything else (model sizes,
data, optimiser) is in the config; this module only wires data, task and core together.
"""

from __future__ import annotations

from typing import Iterator

import ml_collections
from absl import logging

from avs_jax import datasets, input_pipeline
from avs_jax.errors import BadInputError
from avs_jax.train import loop
from avs_jax.train.tasks import make_task

# Host-only entries of evaluation batches that validation does not need.
_HOST_ONLY = ("sample_id", "depth_full")


def _validation_batches(dataset) -> Iterator[dict]:
    for batch in dataset:
        yield {k: v for k, v in batch.items() if k not in _HOST_ONLY}


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains `config.task` on `config.data` into `workdir`; resumes from its checkpoints."""
    # First: the input pipeline below asks JAX for the process index, which starts the backend,
    # after which jax.distributed refuses to initialise.
    loop.maybe_initialize_distributed(config.distributed)
    builder = datasets.open_dataset(config.data)
    n_train = datasets.split_size(builder, "train")
    if n_train < config.data.batch_size:
        raise BadInputError(f"batvision/{config.data.name} has {n_train} training examples, fewer "
                            f"than one batch of {config.data.batch_size}")
    steps_per_epoch = n_train // config.data.batch_size
    has_val = datasets.split_size(builder, "val") > 0
    logging.info("training %s on batvision/%s: %d examples, %d steps per epoch", config.task,
                 config.data.name, n_train, steps_per_epoch)
    task = make_task(config)
    # One dataset object for every validation, so that `data.cache_decoded` keeps its examples.
    val = input_pipeline.make_eval_dataset(builder, config.data, "val") if has_val else None
    return loop.train_and_evaluate(
        config, workdir, task,
        train_iter_fn=lambda: input_pipeline.create_train_iterator(builder, config.data),
        eval_iter_fn=(lambda: _validation_batches(val)) if has_val else None,
        steps_per_epoch=steps_per_epoch)
