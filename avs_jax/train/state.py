"""The train state of both stages and its creation, replicated over the device mesh."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from avs_jax.train.tasks import Task


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree, saved whole in checkpoints.

    step: int32 scalar, optimizer steps done. params: float32 parameters. model_state: the
    non-trained collections (BatchNorm "batch_stats"; {} when the model has none). opt_state: the
    optax state. rng: uint32[2] base key; step i draws `fold_in(rng, i)`, so a resumed run sees
    the same randomness as an uninterrupted one.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array


def data_mesh() -> Mesh:
    """The ("data",) mesh over every device, with automatic sharding propagation.

    `Auto` axes let XLA propagate the batch sharding through the model (reshapes of a
    batch-sharded array included), as pmap-style data parallelism expects; JAX's default
    `Explicit` axes would make every such reshape spell out its output sharding.
    """
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of the state: a full copy on every device."""
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: the leading (batch) axis split over the "data" axis."""
    return NamedSharding(mesh, P("data"))


def init_compiler_options() -> dict[str, Any] | None:
    """XLA options for the one-off initialisation: XLA:CPU's backend optimisation level 1.

    The initialisation runs once, yet XLA:CPU spent about as long compiling it as compiling the
    train step (the batch is pruned before XLA: what compiles are the random draws of the
    parameters). At level 1 the quickstart's three inits compiled in 12.8 / 10.9 / 5.4 s against
    33.0 / 20.2 / 21.1 s (2-core AMD EPYC, jaxlib 0.10) and gave bitwise the same variables, so
    runs start where they started before. Level 0 saves ~2 s more but changes last bits (92 of
    251 arrays by up to 3e-7 relative); level 1 changes the train step's, which keeps the
    default. `tests/test_avsnet.py` checks the equality. Other backends keep their defaults.
    """
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None


def init_variables(task: Task, rng: jax.Array, batch: dict, mesh: Mesh) -> dict:
    """The task's variables ({"params": ..., other collections}), params in float32, replicated.

    batch: a (global) example batch; only its shapes matter to `task.init_variables`.
    """

    def init(rng, batch):
        variables = dict(task.init_variables(rng, batch))
        variables["params"] = jax.tree.map(lambda x: x.astype(jnp.float32), variables["params"])
        return variables

    # Compiler options apply to a top-level jit only; staged into an outer trace (jax.eval_shape,
    # as bench/train_step.py's FLOP count does, or a user's jit) JAX refuses them.
    traced = isinstance(jnp.zeros(()), jax.core.Tracer)
    return jax.jit(
        init,
        out_shardings=replicated(mesh),
        compiler_options=None if traced else init_compiler_options(),
    )(rng, batch)


def create_train_state(
    variables: dict, tx: optax.GradientTransformation, rng: jax.Array, mesh: Mesh
) -> TrainState:
    """The step-0 state from initialised `variables`, with the optimizer state, on `mesh`.

    model_state is every collection of `variables` except "params" (e.g. {"batch_stats": ...}).
    rng: the state's training key (not the one that initialised the variables).
    """

    def build(variables, rng):
        variables = dict(variables)
        params = variables.pop("params")
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=variables,
            opt_state=tx.init(params),
            rng=rng,
        )

    return jax.jit(build, out_shardings=replicated(mesh))(variables, rng)
