"""Loads a training run's checkpoint for evaluation, checking it is the model the config names."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections

from avs_jax.errors import MissingInputError
from avs_jax.train import checkpointing
from avs_jax.train.checkpointing import CheckpointMismatchError, tree_differences


def load_variables(run_dir: str, step: int | str | None = "best") -> tuple[dict, dict]:
    """(variables, meta) of a run's best checkpoint (its latest if none was validated)."""
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise MissingInputError(f"{run_dir}: no checkpoints/ folder: is this a training workdir?")
    try:
        return checkpointing.restore_variables(ckpt_dir, step)
    except checkpointing.NoValidatedCheckpointError:
        if step != "best":
            raise
        return checkpointing.restore_variables(ckpt_dir, None)


def load_run(
    run_dir: str,
    expected_task: str,
    expected_variant: str | None = None,
    step: int | str | None = "best",
):
    """(task, variables, config) of a training run, checked against what the caller expects.

    Args:
      run_dir: a training workdir (holds checkpoints/).
      expected_task: "avsnet" or "relative".
      expected_variant: for stage 1, the variant the evaluation config names for this path.
      step: "best" (by the run's validation metric), None for the latest, or a step.
    Raises:
      CheckpointMismatchError: another task or variant, or parameters that do not fit the
        model its own config describes (names the parameters).
    """
    from avs_jax.train.tasks import make_task

    variables, meta = load_variables(run_dir, step)
    config = ml_collections.ConfigDict(meta["config"])
    if config.get("task") != expected_task:
        raise CheckpointMismatchError(
            f"{run_dir}: a {config.get('task')!r} checkpoint given where a {expected_task!r} "
            "model is expected"
        )
    if expected_variant is not None and config.model.variant != expected_variant:
        raise CheckpointMismatchError(
            f"{run_dir}: holds the {config.model.variant!r} variant, configured as "
            f"{expected_variant!r}"
        )
    task = make_task(config)
    abstract = jax.eval_shape(lambda: task.init_variables(jax.random.key(0), dummy_batch(config)))
    diffs = tree_differences(abstract, variables)
    if diffs:
        raise CheckpointMismatchError(
            f"{run_dir}: the checkpoint does not fit the model of its configuration:\n  "
            + "\n  ".join(diffs)
        )
    variables = jax.tree.map(jnp.asarray, variables)
    return task, variables, config


def dummy_batch(config: ml_collections.ConfigDict, batch: int = 1) -> dict:
    """A zero batch with the shapes a task's `init_variables` reads."""
    h, w = config.data.image_size
    if config.task == "relative":
        return {"frames": jnp.zeros((batch, 3, h, w, 3)), "intrinsics": jnp.eye(3)[None]}
    return {
        "image": jnp.zeros((batch, h, w, 3)),
        "echo": jnp.zeros((batch, h, w, 2)),
        "depth": jnp.zeros((batch, h, w)),
    }
