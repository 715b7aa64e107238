"""The train loop shared by both stages: `train_and_evaluate(config, workdir, task, ...)`.

It knows nothing about the stage: the task brings the model, the loss and the metrics, the
config every number. See the package docstring (`avs_jax.train`) for the Task protocol. Each
validation also writes TensorBoard images of `config.train.num_summary_images` fixed validation
samples when the task renders them (its optional `summary_images`; avs_jax/train/summaries.py).
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
import warnings
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from avs_jax import runtime_defaults
from avs_jax.config_files import differences
from avs_jax.errors import BadInputError, InputError
from avs_jax.train import checkpointing
from avs_jax.train.distributed import maybe_initialize_distributed
from avs_jax.train.interrupts import StopFlag, agreed_signal
from avs_jax.train.metric_writers import MetricWriter
from avs_jax.train.optimizer import create_learning_rate_fn, create_optimizer
from avs_jax.train.prefetch import DevicePrefetcher
from avs_jax.train.pretrained import load_pretrained, pretrained_sources
from avs_jax.train.state import TrainState, create_train_state, data_mesh, init_variables
from avs_jax.train.step import make_eval_step, make_train_step, put_batch
from avs_jax.train.summaries import ValidationImages
from avs_jax.train.tasks import WEIGHT_PREFIX, Task
from avs_jax.workdir_lock import workdir_lock


class _FrozenHeap:
    """Keeps the objects alive at each `freeze()` out of Python's full garbage collections.

    The process holds millions of long-lived objects (JAX, Flax, grain, TFDS, the compiled
    steps), and a full collection scans them all: measured 0.15-0.27 s on a 2-core Xeon, a
    pause in which no step is dispatched (7% of a tiny 30-step run). `gc.freeze()` moves them
    to a generation the collector never scans; `release()` gives them back at the end, so that
    cycles among them that die later are still collected (and unfreezes whatever else was
    frozen: gc keeps one permanent generation).
    """

    def __init__(self):
        self.times = 0  # freezes since the last release

    def freeze(self) -> None:
        gc.collect()  # garbage first: what is frozen is never collected while frozen
        gc.freeze()
        self.times += 1

    def release(self) -> None:
        if self.times:
            gc.unfreeze()
            self.times = 0


class NonFiniteLossError(InputError, FloatingPointError):
    """Training stopped because a step's loss was NaN or infinite."""


def train_length(cfg: ml_collections.ConfigDict, steps_per_epoch: int | None) -> tuple[int, int]:
    """(num_steps, steps_per_epoch) from config.train: num_steps > 0 wins over epochs."""
    spe = steps_per_epoch if steps_per_epoch and steps_per_epoch > 0 else cfg.steps_per_epoch
    if cfg.num_steps > 0:
        num_steps = int(cfg.num_steps)
        spe = spe if spe and spe > 0 else num_steps
    else:
        if not spe or spe <= 0:
            raise BadInputError(
                "config.train.steps_per_epoch (or num_steps) must be > 0 to know "
                "the length of training"
            )
        num_steps = int(cfg.num_epochs * spe)
    if num_steps <= 0:
        raise BadInputError(
            f"training length {num_steps} steps: check config.train.num_steps, "
            "num_epochs and steps_per_epoch"
        )
    return num_steps, int(spe)


def _weighted_mean(records: list[tuple[int, dict]]) -> dict[str, float]:
    """Set-level means of per-batch metrics; records are (batch size, metrics) per batch."""
    means = {}
    for k in records[0][1]:
        if k.startswith(WEIGHT_PREFIX):
            continue
        weighted = [(float(m.get(WEIGHT_PREFIX + k, n)), float(m[k])) for n, m in records]
        total = sum(w for w, _ in weighted)
        means[k] = sum(w * v for w, v in weighted if w > 0) / total if total > 0 else float("nan")
    return means


def evaluate(eval_step: Callable, state: TrainState, batches: Iterable[dict], mesh) -> dict:
    """Validation metrics: each batch's metrics weighted by its size (or by the count in its
    `WEIGHT_PREFIX` companion), averaged over the set."""
    pending = []
    for batch in batches:
        n = len(next(iter(batch.values())))
        pending.append((n, eval_step(state, put_batch(batch, mesh))))
    if not pending:
        raise BadInputError("the validation iterator yielded no batch")
    return _weighted_mean(jax.device_get(pending))


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    task: Task,
    train_iter_fn: Callable[[], Iterator[dict]],
    eval_iter_fn: Callable[[], Iterable[dict]] | None = None,
    steps_per_epoch: int | None = None,
    on_start: Callable[[], None] | None = None,
) -> dict:
    """Trains `task` to config.train's length, validating and checkpointing; resumes if it can.

    Args:
      config: with the sections of `default_train_config` (train, checkpoint, distributed,
        init_from, init_from_target).
      workdir: checkpoints (workdir/checkpoints), metrics.jsonl and TensorBoard events go here.
        A run with checkpoints in workdir continues from the newest one that can be read
        exactly (same state, data position and random stream). The run holds workdir/.lock
        (avs_jax/workdir_lock.py): a second run in the same workdir is an error naming it.
      task: the stage's Task (see `avs_jax.train`).
      train_iter_fn: () -> endless iterator of global host batches (dict of numpy arrays; non-
        numeric entries such as sample ids stay on the host). A grain iterator (get_state /
        set_state) is checkpointed with the run; other iterators restart from their beginning.
      eval_iter_fn: () -> a finite iterable of validation batches, or None for no validation.
      steps_per_epoch: overrides config.train.steps_per_epoch.
      on_start: called once the workdir is this run's, before anything else is written there
        (what a run records beside its checkpoints; a refused second run must not touch it).
    Returns:
      {"state": final TrainState, "step": int, "train": [per-step host metrics with "step"],
       "eval": [validation records], "stopped": "done" | "signal" | "stop_at_step" | "data",
       "signal": the signal number that stopped it (after a checkpoint), else None}.
    Raises:
      NonFiniteLossError: a NaN/inf loss; names the step and the last good checkpoint (kept).
      WorkdirLockedError: another process runs in `workdir`.
      CheckpointMismatchError: the checkpoint to resume holds another model (names the
        parameters and the config keys that changed).
      CorruptCheckpointError: no checkpoint of the workdir can be read.
    """
    maybe_initialize_distributed(config.distributed)
    # After the distributed init: asking JAX for its backend creates it.
    cache = runtime_defaults.enable_compilation_cache()
    if cache:
        logging.info("compiled steps are cached in %s (JAX_COMPILATION_CACHE_DIR to change)", cache)
    with workdir_lock(workdir, enabled=jax.process_index() == 0):
        if on_start is not None:
            on_start()
        return _train_locked(config, workdir, task, train_iter_fn, eval_iter_fn, steps_per_epoch)


def _train_locked(
    config: ml_collections.ConfigDict,
    workdir: str,
    task: Task,
    train_iter_fn: Callable[[], Iterator[dict]],
    eval_iter_fn: Callable[[], Iterable[dict]] | None,
    steps_per_epoch: int | None,
) -> dict:
    """`train_and_evaluate` once the workdir is this process's."""
    cfg = config.train
    num_steps, spe = train_length(cfg, steps_per_epoch)
    mesh = data_mesh()
    compute_dtype = jnp.dtype(cfg.compute_dtype)
    cast_keys = tuple(cfg.cast_batch_keys)
    lead = jax.process_index() == 0
    train_iter = train_iter_fn()
    first = next(train_iter)
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(cfg.seed))
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint)
    try:  # close the manager (its threads) if setting up fails
        resuming = ckpt.latest_step() is not None
        first_device = put_batch(first, mesh)
        variables = init_variables(task, init_rng, first_device, mesh)
        if config.get("init_from") and not resuming:  # a resumed run has its weights already
            for path, target in pretrained_sources(config):
                variables = load_pretrained(path, variables, target)
        tx = create_optimizer(cfg, num_steps, task.param_labels(variables["params"]), spe)
        lr_fn = create_learning_rate_fn(cfg, num_steps, spe)
        state = create_train_state(variables, tx, train_rng, mesh)
        del variables

        meta_config = json.loads(config.to_json_best_effort())
        pending_batch = first
        if resuming:
            # The newest checkpoint that can be read; a config of another model is an error
            # naming the parameters (and what changed in the config).
            try:
                state, meta = ckpt.restore_newest(checkpointing.abstract_like(state), train_iter)
            except checkpointing.CheckpointMismatchError as e:
                changed = differences(_saved_config(ckpt), meta_config)
                raise checkpointing.CheckpointMismatchError(
                    f"{e}\n  config keys that differ from the run's: {'; '.join(changed) or 'none'}"
                ) from None
            # Allowed (training longer is a config change), but said: the weights so far were
            # trained with the saved settings.
            changed = differences(meta.get("config") or {}, meta_config)
            if changed and lead:
                logging.warning(
                    "resuming %s with a config that differs from its checkpoint's: %s",
                    workdir,
                    "; ".join(changed),
                )
            logging.info("resumed from %s step %d", ckpt.directory, meta["step"])
            if checkpointing.is_grain_iterator(train_iter):
                pending_batch = None  # the restored iterator is at the checkpoint's position
    except BaseException:
        ckpt.close()
        raise

    # After the restore: the prefetcher reads on from the restored position.
    batches = DevicePrefetcher(
        train_iter,
        lambda b: put_batch(b, mesh),
        cfg.prefetch_to_device,
        first=pending_batch,
        first_device=first_device if pending_batch is not None else None,
    )
    del first, first_device, pending_batch
    p_train_step = make_train_step(task, tx, mesh, compute_dtype, cast_keys, lr_fn)
    p_eval_step = make_eval_step(task, mesh, compute_dtype, cast_keys)

    step = int(jax.device_get(state.step))
    start_step = step
    saved_step = step if ckpt.latest_step() == step else None
    last_good = ckpt.latest_step()
    # Records past the restored step are of steps that run again now (the kill came after them,
    # before their checkpoint): dropped, so that metrics.jsonl holds each step once.
    writer = MetricWriter(workdir, enabled=lead, purge_after=step)
    images = ValidationImages(task, cfg.num_summary_images, enabled=lead)
    history: list[dict] = []
    eval_history: list[dict] = []
    buffer: list[tuple[int, int, Any]] = []  # (step, batch size, device metrics)
    timer = [time.perf_counter(), 0]  # window start, samples in window
    bar = tqdm(
        total=num_steps,
        initial=step,
        disable=not (lead and cfg.progress_bar),
        dynamic_ncols=True,
        desc="train",
    )

    def flush():
        """One host read of the buffered step metrics: check, log, write."""
        if not buffer:
            return
        host = jax.device_get([m for _, _, m in buffer])
        records = []
        for (s, _, _), m in zip(buffer, host):
            rec = {k: float(v) for k, v in m.items()}
            if not math.isfinite(rec["loss"]):
                buffer.clear()
                ckpt.wait()
                where = (
                    f"step {last_good} in {ckpt.directory}"
                    if last_good is not None
                    else "none (no checkpoint was saved)"
                )
                raise NonFiniteLossError(
                    f"non-finite loss ({rec['loss']}) at train step {s} (the update from step "
                    f"{s - 1}); training stopped without saving. Last good checkpoint: {where}"
                )
            rec["step"] = s
            records.append(rec)
        history.extend(records)
        elapsed = time.perf_counter() - timer[0]
        window = {k: float(np.mean([r[k] for r in records])) for k in records[0] if k != "step"}
        window["samples_per_s"] = timer[1] / max(elapsed, 1e-9)
        writer.write_scalars(records[-1]["step"], window, "train")
        writer.flush()
        bar.set_postfix(loss=f"{window['loss']:.4g}", samples_s=f"{window['samples_per_s']:.1f}")
        buffer.clear()
        if heap.times == 1:
            heap.freeze()  # again after the first window: the compiled step's objects too
        timer[0], timer[1] = time.perf_counter(), 0

    def save(metrics=None):
        nonlocal saved_step, last_good
        flush()  # never save a state whose losses were not checked
        ckpt.save(step, state, batches, meta=dict(config=meta_config), metrics=metrics)
        saved_step = last_good = step
        timer[0] = time.perf_counter()  # samples/s measures training, not validation or saving

    stopped, stop_signal = "done", None
    heap = _FrozenHeap()
    try:
        heap.freeze()  # the set-up's objects (before the step is compiled)
        timer[0] = time.perf_counter()
        with warnings.catch_warnings(), StopFlag().installed() as stop:
            # CPU cannot always reuse donated buffers; the warning is noise there.
            warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
            while step < num_steps:
                signalled = agreed_signal(stop.signal, step)
                if signalled is not None:
                    stopped, stop_signal = "signal", signalled
                    break
                if cfg.stop_at_step > 0 and step >= cfg.stop_at_step:
                    stopped = "stop_at_step"
                    break
                try:
                    batch, n = next(batches)
                except StopIteration:
                    logging.warning("the train iterator ended at step %d of %d", step, num_steps)
                    stopped = "data"
                    break
                state, metrics = p_train_step(state, batch)
                step += 1
                buffer.append((step, n, metrics))
                timer[1] += n
                bar.update(1)
                if step % cfg.log_every == 0 or step == num_steps:
                    flush()
                eval_now = (step % cfg.eval_every == 0) if cfg.eval_every > 0 else (step % spe == 0)
                if (eval_now or step == num_steps) and eval_iter_fn is not None:
                    flush()
                    results = evaluate(p_eval_step, state, images.watch(eval_iter_fn()), mesh)
                    eval_history.append(dict(results, step=step))
                    writer.write_scalars(step, results, "eval")
                    writer.write_images(step, images.render(state), "eval")
                    writer.flush()
                    logging.info("step %d validation: %s", step, results)
                    save(results)
                elif eval_now or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0):
                    save()
            if saved_step != step:
                save()
            flush()
    finally:
        try:
            batches.close()
            bar.close()
            writer.close()
            ckpt.close()
        finally:
            heap.release()  # last: the reading thread has stopped
    logging.info("training stopped (%s) at step %d (started at %d)", stopped, step, start_step)
    return {
        "state": state,
        "step": step,
        "train": history,
        "eval": eval_history,
        "stopped": stopped,
        "signal": stop_signal,
    }


def _saved_config(ckpt: checkpointing.Checkpointer) -> dict:
    """The config saved with the newest checkpoint whose metadata reads ({} if none does)."""
    for step in sorted(ckpt.manager.all_steps(), reverse=True):
        try:
            return ckpt.read_meta(step).get("config") or {}
        except checkpointing.CorruptCheckpointError:
            continue
    return {}
