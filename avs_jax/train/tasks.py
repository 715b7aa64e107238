"""The Task protocol a training stage implements, and the stages' Tasks by name.

A stage plugs into the train core (loop.py, step.py) by supplying a Task, its input pipeline
and a config; the core never branches on the stage. `config.task` picks the stage: "avsnet"
(stage 1, AVS-Net / Only-RGB / echo-only on BV2, SILog), "relative" (DepthNet + PoseNet on BV1
triples, photometric) or "depth_pretext" (the relative DepthNet on BV2 depth up to scale: the
quickstart's pretraining, avs_jax/sim_pretrain.py). Importable without the data stack (grain,
TFDS): the benchmarks and the checkpoint loader build a Task from a config alone; training
(avs_jax/train/run.py) adds the data.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import jax
import ml_collections

from avs_jax.errors import BadInputError

Batch = dict[str, jax.Array]
Variables = dict[str, Any]

# An eval metric `k` may come with `WEIGHT_PREFIX + k`: how many samples (or images, or pairs) of
# the batch it averages over, when that is not the batch size. The set's mean then weights the
# batch by that count, so a batch that has none drops out instead of turning the mean into NaN.
WEIGHT_PREFIX = "weight/"


@runtime_checkable
class Task(Protocol):
    """What the train core needs of a stage: its model's variables, loss, validation metrics.

    All arrays are jax arrays; every method except `param_labels` runs inside `jax.jit`
    (trace-safe code only: no Python branching on values, no I/O). `batch` is the global batch
    dict of the input pipeline with only its numeric entries (sample ids and other strings never
    reach the task); the float entries named in `config.train.cast_batch_keys` arrive already
    cast to `config.train.compute_dtype`, which is also the dtype the task gives its model;
    params, optimizer state, gradients, targets and losses stay float32.

    Optional, outside the protocol (a task without it shows no images): `summary_images(
    variables, batch) -> {name: uint8 [N, H, W, 3]}`, called on the host of process 0 at each
    validation with the state's variables and the same N validation samples (host numpy arrays);
    it jits its own prediction and renders with avs_jax/train/summaries.py. TensorBoard shows
    sample i under `eval/<name>/<i>`.
    """

    def init_variables(self, rng: jax.Array, batch: Batch) -> Variables:
        """Initial variables, e.g. `model.init(rng, batch["image"], train=False)`.

        The core casts params to float32; every other collection (e.g. "batch_stats") becomes
        the state's `model_state` ({} when there is none).
        """
        ...

    def loss_and_metrics(
        self, params: Any, model_state: Variables, batch: Batch, rng: jax.Array | None, train: bool
    ) -> tuple[jax.Array, tuple[Variables, dict[str, jax.Array]]]:
        """The training objective: `(loss, (new_model_state, metrics))`.

        loss: float32 scalar (float32 even when the model runs in bfloat16). new_model_state:
        the structure of `model_state` (updated BatchNorm statistics: the mutable collections of
        `model.apply(..., mutable=...)`), unchanged if nothing is mutable. metrics: scalars
        logged as means over log windows (the core adds "loss", "grad_norm", "learning_rate").
        rng: this step's key, `fold_in(state.rng, step)`. BatchNorm means are over the global
        batch on any device count.
        """
        ...

    def param_labels(self, params: Any) -> Any:
        """A label per parameter leaf (same structure as params), called once on the host.

        Each label's learning rate is the schedule times `config.train.lr_multipliers.get(label,
        1.0)` (ZoeDepth: {"encoder": 0.1} for the pretrained encoder, "default" otherwise).
        """
        ...

    def eval_metrics(
        self, params: Any, model_state: Variables, batch: Batch
    ) -> dict[str, jax.Array]:
        """Validation metrics of one batch as batch means (inference mode, running statistics).

        The core averages them over the set, weighted by batch size, or by the count under
        `"weight/" + name` when a metric covers only some samples. Must contain
        `config.checkpoint.best_metric` when validation ranks checkpoints.
        """
        ...


# config.task -> "module:class"; the class takes the whole config.
TASKS = {
    "avsnet": "avs_jax.train.avsnet_task:AVSNetTask",
    "relative": "avs_jax.train.relative_task:RelativeDepthTask",
    "depth_pretext": "avs_jax.train.depth_pretext_task:DepthPretextTask",
}


def make_task(config: ml_collections.ConfigDict) -> Task:
    """The Task object of `config.task`."""
    if config.task not in TASKS:
        raise BadInputError(f"config.task must be one of {sorted(TASKS)}, got {config.task!r}")
    module, cls = TASKS[config.task].split(":")
    return getattr(importlib.import_module(module), cls)(config)
