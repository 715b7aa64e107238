"""Orbax checkpoints of a run (train state, data iterator, metadata) and pretrained-weight loading.

A checkpoint step directory holds a Composite of three items:
  state: the TrainState (StandardSave; restored against an abstract target that carries the
         mesh shardings, so arrays come back replicated on the current mesh);
  data:  the grain iterator state (`grain.checkpoint.CheckpointSave`), when the train iterator
         is a grain iterator (has get_state/set_state); absent otherwise;
  meta:  JSON {"step": int, "config": dict, ...}.
Kept: the latest `keep` checkpoints and the best one by `best_metric` among those saved with
validation metrics.

A checkpoint that cannot be read (a truncated file, emptied metadata: a full disk or a copy cut
short) is never a traceback: resuming falls back to the newest one that restores and moves the
broken ones aside (`Checkpointer.restore_newest`); evaluation names the broken checkpoint
(`CorruptCheckpointError`). A checkpoint of another model (parameter shapes that differ) is
`CheckpointMismatchError`, naming the parameters.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as ocm

from avs_jax.errors import BadInputError, InputError, MissingInputError
from avs_jax.train.state import TrainState

# Where resuming moves checkpoints that do not restore, beside `checkpoints/` in the workdir.
CORRUPT_DIR = "checkpoints_unreadable"


class CorruptCheckpointError(InputError, OSError):
    """A checkpoint whose files cannot be read; names its folder and the reader's complaint."""


class CheckpointMismatchError(InputError, ValueError):
    """A checkpoint that does not fit the model it is loaded as; names what differs."""


class NoValidatedCheckpointError(BadInputError):
    """ "best" was asked of a run none of whose checkpoints has validation metrics."""


def _path_key(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """ "a/b/c" -> shape of each array leaf (dict keys, dataclass fields and indices alike)."""
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
    )[0]
    return {
        "/".join(_path_key(p) for p in path): tuple(np.shape(leaf))
        for path, leaf in leaves
        if hasattr(leaf, "shape")
    }


def tree_differences(expected: Any, got: Any, limit: int = 20) -> list[str]:
    """Human-readable differences of two variable trees: missing, unexpected, wrong shapes."""
    e, g = _shapes(expected), _shapes(got)
    diffs = [f"missing {k} {e[k]}" for k in sorted(set(e) - set(g))]
    diffs += [f"unexpected {k} {g[k]}" for k in sorted(set(g) - set(e))]
    diffs += [
        f"shape of {k}: checkpoint {g[k]}, model {e[k]}"
        for k in sorted(set(e) & set(g))
        if e[k] != g[k]
    ]
    return diffs[:limit] + ([f"... and {len(diffs) - limit} more"] if len(diffs) > limit else [])


def _reason(e: BaseException) -> str:
    """One line of what a reader raised (orbax/tensorstore messages run over many lines)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _state_metadata(step_dir: str) -> Any:
    """The saved state's tree of array metadata (shapes, dtypes), read without the arrays."""
    reader = ocp.PyTreeCheckpointHandler()
    try:
        tree = reader.metadata(epath.Path(step_dir) / "state")
    finally:
        reader.close()
    return getattr(tree, "item_metadata", tree)


def is_grain_iterator(it: Any) -> bool:
    """Whether the iterator's position can be checkpointed (grain DatasetIterator / loader
    iterator, or a wrapper of one that says so with `checkpointable`)."""
    return (
        hasattr(it, "get_state")
        and hasattr(it, "set_state")
        and getattr(it, "checkpointable", True)
    )


class Checkpointer:
    """The run's orbax CheckpointManager under `directory`, with the policy of config.checkpoint."""

    def __init__(self, directory: str, cfg: ml_collections.ConfigDict):
        self.directory = os.path.abspath(directory)
        self.best_metric = cfg.best_metric
        self.best_mode = cfg.best_mode
        best_metric, reverse = cfg.best_metric, cfg.best_mode == "min"
        if cfg.best_mode not in ("min", "max"):
            raise BadInputError(
                f"config.checkpoint.best_mode={cfg.best_mode!r}; expected min or max"
            )
        policy = ocm.AnyPreservationPolicy(
            [
                ocm.LatestN(n=cfg.keep),
                ocm.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    reverse=reverse,
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            enable_async_checkpointing=cfg.async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(
        self,
        step: int,
        state: TrainState,
        data_iter: Any = None,
        meta: dict | None = None,
        metrics: dict | None = None,
    ) -> None:
        """Saves (asynchronously when configured) the state, iterator position and metadata.

        metrics: validation metrics of this state (ranked by best_metric); None when not evaluated.
        """
        if metrics is not None and self.best_metric not in metrics:
            raise KeyError(
                f"config.checkpoint.best_metric={self.best_metric!r} is not among the "
                f"validation metrics {sorted(metrics)}"
            )
        metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        items = dict(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(dict(meta or {}, step=int(step), metrics=metrics)),
        )
        if data_iter is not None and is_grain_iterator(data_iter):
            items["data"] = grain.checkpoint.CheckpointSave(data_iter)
        self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)

    def restore(
        self, abstract_state: Any, data_iter: Any = None, step: int | None = None
    ) -> tuple[TrainState, dict]:
        """Restores state (onto abstract_state's shardings), iterator position and metadata.

        step: None for the latest. The iterator is restored in place when it is a grain iterator
        and the checkpoint has its state.
        """
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise MissingInputError(f"no checkpoint under {self.directory}")
        items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        has_data = os.path.isdir(os.path.join(self.directory, str(step), "data"))
        if data_iter is not None and is_grain_iterator(data_iter) and has_data:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        elif data_iter is not None:
            logging.warning(
                "checkpoint %d: data iterator position not restored (not a grain "
                "iterator or not saved); the data order will differ from the "
                "uninterrupted run",
                step,
            )
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"], restored["meta"]

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def read_meta(self, step: int) -> dict:
        """The JSON metadata of checkpoint `step` ({"step", "config", "metrics" or None}).

        Raises CorruptCheckpointError naming the folder when it cannot be read.
        """
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
                "meta"
            ]
        except Exception as e:  # orbax/tensorstore raise many types for one unreadable file
            raise CorruptCheckpointError(
                f"checkpoint {self.step_dir(step)} cannot be read: its metadata: {_reason(e)}"
            ) from e
        if not isinstance(meta, dict):
            raise CorruptCheckpointError(
                f"checkpoint {self.step_dir(step)} cannot be read: its metadata is not a JSON "
                "object"
            )
        return meta

    def restore_newest(self, abstract_state: Any, data_iter: Any = None) -> tuple[TrainState, dict]:
        """Restores the newest checkpoint that can be read, for resuming a run.

        Newer checkpoints that cannot be read are said in the log (which, and why) and moved to
        `<workdir>/checkpoints_unreadable/<step>` (the run will save those steps again). When
        none can be read, nothing is moved and CorruptCheckpointError lists them all.
        Raises CheckpointMismatchError, before reading any array, when the saved state's arrays
        do not fit `abstract_state` (the config describes another model).
        """
        skipped: list[tuple[int, str]] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                meta = self.read_meta(step)
                saved = _state_metadata(self.step_dir(step))
            except Exception as e:  # pylint: disable=broad-except
                skipped.append((step, _reason(e.__cause__ or e)))
                continue
            diffs = tree_differences(abstract_state, saved)
            if diffs:
                raise CheckpointMismatchError(
                    f"checkpoint {self.step_dir(step)} does not fit the model of this config "
                    "(resume it with the config it was trained with, or use a new --workdir):"
                    "\n  " + "\n  ".join(diffs)
                )
            try:
                state, _ = self.restore(abstract_state, data_iter, step)
            except Exception as e:  # pylint: disable=broad-except
                skipped.append((step, _reason(e)))
                continue
            if skipped:
                self._set_aside(skipped, step)
            return state, meta
        raise CorruptCheckpointError(
            f"no checkpoint under {self.directory} can be read: "
            + "; ".join(f"step {s}: {why}" for s, why in skipped)
        )

    def _set_aside(self, skipped: list[tuple[int, str]], restored: int) -> None:
        """Moves the unreadable checkpoints out of the manager's folder: on process 0 only (every
        process finds them; two moving one folder would crash), then all reload after a barrier."""
        if jax.process_index() == 0:
            aside = os.path.join(os.path.dirname(self.directory), CORRUPT_DIR)
            os.makedirs(aside, exist_ok=True)
            for step, why in skipped:
                target = os.path.join(aside, str(step))
                if os.path.exists(target):
                    target += time.strftime("-%Y%m%d-%H%M%S")
                shutil.move(self.step_dir(step), target)
                logging.warning(
                    "checkpoint %s cannot be read (%s): skipped, moved to %s",
                    self.step_dir(step),
                    why,
                    target,
                )
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("avs_jax: unreadable checkpoints set aside")
        logging.warning("resuming from checkpoint %d, the newest that can be read", restored)
        self.manager.reload()

    def best_step(self) -> int | None:
        """The kept checkpoint with the best validation `best_metric`; None if none was validated."""
        self.manager.wait_until_finished()
        scored = []
        for step in self.manager.all_steps():
            metrics = self.read_meta(step).get("metrics")
            if metrics and self.best_metric in metrics:
                scored.append((metrics[self.best_metric], step))
        if not scored:
            return None
        return (min(scored) if self.best_mode == "min" else max(scored))[1]

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def restore_variables(
    checkpoint_dir: str, step: int | str | None = None, cfg: ml_collections.ConfigDict | None = None
) -> tuple[dict, dict]:
    """Model variables of a run's checkpoint for evaluation: ({"params", ...model_state}, meta).

    checkpoint_dir: `workdir/checkpoints`. step: an int, None for the latest, or "best" for the
    best by cfg.best_metric (cfg = config.checkpoint, by default the run's own). Arrays come
    back on this process's first device.
    """
    checkpoint_dir = os.path.abspath(checkpoint_dir)
    if not os.path.isdir(checkpoint_dir):
        raise MissingInputError(f"checkpoint directory {checkpoint_dir} does not exist")
    if cfg is None:
        cfg = ml_collections.ConfigDict(
            dict(keep=1000, best_metric="abs_rel", best_mode="min", async_save=False)
        )
    ckpt = Checkpointer(checkpoint_dir, cfg)
    try:
        latest = ckpt.latest_step()
        if step == "best" and latest is not None:
            # Rank by the metric the run itself was configured to rank by.
            run_cfg = (ckpt.read_meta(latest).get("config") or {}).get("checkpoint") or {}
            ckpt.best_metric = run_cfg.get("best_metric", ckpt.best_metric)
            ckpt.best_mode = run_cfg.get("best_mode", ckpt.best_mode)
        if step == "best":
            step = ckpt.best_step()
            if step is None:
                raise NoValidatedCheckpointError(
                    f"{checkpoint_dir}: no checkpoint has validation metrics"
                )
        elif step is None:
            step = ckpt.latest_step()
        if step is None:
            raise MissingInputError(f"no checkpoint under {checkpoint_dir}")
        # Onto this process's first device, whatever mesh the run was trained on (a checkpoint
        # of 8 GPUs evaluates on one CPU).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        meta = ckpt.read_meta(step)
        # The item's own handler: a Checkpointer pointed at the item folder would look there for
        # the step's _CHECKPOINT_METADATA and log a warning for each model evaluated.
        state_dir = epath.Path(checkpoint_dir) / str(step) / "state"
        reader = ocp.PyTreeCheckpointHandler()
        try:
            tree = reader.metadata(state_dir)
            tree = getattr(tree, "item_metadata", tree)
            if not all(k in tree for k in ("params", "model_state")):
                raise KeyError("the saved state has no 'params' and 'model_state'")
            # Only what the model needs: the optimizer state (Adam's two moments, twice the
            # parameters) is left on disk. Measured on the quickstart's AVS-Net checkpoint:
            # 251 of 727 arrays read, this restore 1.6 s against 2.4-3.0 s for the whole state.
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                {k: tree[k] for k in ("params", "model_state")},
                is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
            )
            state = reader.restore(
                state_dir,
                args=ocp.args.PyTreeRestore(
                    item=target,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                    partial_restore=True,
                ),
            )
        except Exception as e:  # orbax/tensorstore raise many types for one unreadable file
            raise CorruptCheckpointError(
                f"checkpoint {ckpt.step_dir(step)} cannot be read: {_reason(e)}"
            ) from e
        finally:
            reader.close()
    finally:
        ckpt.manager.close()
    return {"params": state["params"], **dict(state["model_state"])}, meta


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays: a restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
