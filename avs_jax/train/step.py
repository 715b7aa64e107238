"""The pure train and eval steps, and their data-parallel jit over the ("data",) mesh.

Data parallelism is plain `jax.jit` with shardings: the batch is split over the "data" axis,
the state is replicated, and XLA inserts the gradient all-reduce. Reductions over the batch
inside the model (BatchNorm means and variances, the loss means) are therefore over the global
batch, exactly as on one device: there are no per-device statistics.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from avs_jax.train.state import TrainState, data_sharded, replicated
from avs_jax.train.tasks import Task

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


def device_batch_keys(batch: Batch) -> list[str]:
    """Keys of the batch entries that go to the device: numeric arrays (not sample ids)."""
    return [
        k
        for k, v in batch.items()
        if isinstance(v, jax.Array) or np.asarray(v).dtype.kind in "biuf"
    ]


def cast_inputs(batch: Batch, dtype: Any, keys: Sequence[str]) -> Batch:
    """`batch` with the floating entries named in `keys` cast to `dtype` (the compute dtype).

    Targets (e.g. depth) keep float32, so losses are computed against exact values.
    """
    return {
        k: (v.astype(dtype) if k in keys and jnp.issubdtype(v.dtype, jnp.floating) else v)
        for k, v in batch.items()
    }


def step_rng(state: TrainState) -> jax.Array:
    """The key of the step `state.step`: depends only on the base key and the step number."""
    return jax.random.fold_in(state.rng, state.step)


def train_step(
    task: Task,
    tx: optax.GradientTransformation,
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    compute_dtype: Any = jnp.float32,
    cast_keys: Sequence[str] = (),
) -> tuple[TrainState, Metrics]:
    """One optimizer step: the task's loss, its gradient, the optax update. Pure.

    Returns the new state and the step's metrics: `loss`, `grad_norm` (before clipping) and the
    task's own metrics, all float32 scalars.
    """
    batch = cast_inputs(batch, compute_dtype, cast_keys)

    def loss_fn(params):
        loss, (new_model_state, metrics) = task.loss_and_metrics(
            params, state.model_state, batch, rng, True
        )
        return loss.astype(jnp.float32), (new_model_state, metrics)

    (loss, (new_model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1, params=params, model_state=new_model_state, opt_state=opt_state
    )
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics.update(loss=loss, grad_norm=optax.tree.norm(grads))
    return new_state, metrics


def eval_step(
    task: Task,
    state: TrainState,
    batch: Batch,
    compute_dtype: Any = jnp.float32,
    cast_keys: Sequence[str] = (),
) -> Metrics:
    """The task's validation metrics on one batch (float32 scalars, means over the batch)."""
    batch = cast_inputs(batch, compute_dtype, cast_keys)
    metrics = task.eval_metrics(state.params, state.model_state, batch)
    return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def make_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    compute_dtype: Any = jnp.float32,
    cast_keys: Sequence[str] = (),
    lr_fn: Callable | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`train_step` jitted over `mesh`: state replicated and donated, batch split over "data".

    The step's key is `fold_in(state.rng, state.step)`, derived inside the compiled step.
    lr_fn: the base learning-rate schedule; when given, its value at the step is reported as
    the metric `learning_rate` (computed on device, so the host never evaluates schedules).
    """

    def step(state, batch):
        lr_step = state.step
        new_state, metrics = train_step(
            task, tx, state, batch, step_rng(state), compute_dtype, cast_keys
        )
        if lr_fn is not None:
            metrics["learning_rate"] = jnp.asarray(lr_fn(lr_step), jnp.float32)
        return new_state, metrics

    rep = replicated(mesh)
    return jax.jit(
        step, in_shardings=(rep, data_sharded(mesh)), out_shardings=(rep, rep), donate_argnums=(0,)
    )


def make_eval_step(
    task: Task, mesh: Mesh, compute_dtype: Any = jnp.float32, cast_keys: Sequence[str] = ()
) -> Callable[[TrainState, Batch], Metrics]:
    """`eval_step` jitted over `mesh` (nothing donated: the state lives on)."""
    rep = replicated(mesh)
    return jax.jit(
        lambda state, batch: eval_step(task, state, batch, compute_dtype, cast_keys),
        in_shardings=(rep, data_sharded(mesh)),
        out_shardings=rep,
    )


def put_batch(batch: Batch, mesh: Mesh) -> Batch:
    """The device part of a host batch as global arrays split over "data".

    Each process passes its own slice of the global batch (on one host: the whole batch); the
    leading axis must divide evenly over the local devices.
    """
    sharding = data_sharded(mesh)
    local = jax.local_device_count()
    for k in device_batch_keys(batch):
        n = np.shape(batch[k])[0] if np.ndim(batch[k]) else 0
        if n == 0 or n % local:
            raise ValueError(
                f"batch entry {k!r} has leading size {n}, which must be a positive "
                f"multiple of the {local} local devices (set the batch size or "
                "drop/pad the last batch in the input pipeline)"
            )
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k]))
        for k in device_batch_keys(batch)
    }
