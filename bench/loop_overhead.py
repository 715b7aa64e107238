"""What the input side costs a step, measured in one process: the command's path against the step.

  python bench/loop_overhead.py [--stage=avsnet|relative] [--blocks=40] [--block_steps=10]
  python bench/loop_overhead.py --in_command [--stage=...] [--blocks=12] [--block_steps=10]

bench/end_to_end.py compares the training command with bench/train_step.py, two processes run
one after the other; on a shared VM their speeds drift apart by several percent between
processes, which is as large as what a tiny step loses to its input. Here one process builds
the tiny config's step once and runs it in alternating blocks of `block_steps` steps:

- "step": the compiled step dispatched back to back on one device batch (train_step.py's
  reference);
- "command path": as the train loop runs it, each step on the next batch of the real input
  pipeline (the tiny config, a dataset stored at its size, 384 examples as the quickstart's)
  read and put on the device by the loop's `DevicePrefetcher`, the metrics read back every
  `config.train.log_every` steps.

The heap is frozen as the loop freezes it. Drift then hits both alike, and the ratio of their
summed times is what the input path costs the step. Prints one JSON line.

`--in_command` asks the same question of the training command itself (`avs_jax.main`, in this
process, with its checkpointer, metric writers and log windows): its prefetcher is wrapped so
that every other block of `block_steps` steps reuses the last device batch instead of taking a
new one (the reading thread then waits on its full queue), each block one logged window of
metrics.jsonl. The windows after the first two are compared: the steps that read the real input
against the same command's steps that read none.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))

import end_to_end as e2e  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from avs_jax.data import datasets, input_pipeline  # noqa: E402
from avs_jax.train import optimizer  # noqa: E402
from avs_jax.train import state as state_lib  # noqa: E402
from avs_jax.train import step as step_lib  # noqa: E402
from avs_jax.train.prefetch import DevicePrefetcher  # noqa: E402
from avs_jax.train.tasks import make_task  # noqa: E402
from tfds_batvision.build import build_dataset  # noqa: E402


def _tiny_root(stage: str, tmp: Path) -> Path:
    """The stage's BatVision root under tmp at the quickstart's size and count (bench/end_to_end)."""
    dataset = e2e.STAGES[stage][1]
    n = e2e.TINY_EXAMPLES + (40 if dataset == "bv1_triples" else 0)  # BV1: n - 40 triples
    return e2e.tiny_root(dataset, tmp / "root", n)


def measure(stage: str, tmp: Path, blocks: int, block_steps: int) -> dict:
    """Alternating blocks of the two paths; samples/s of each and their ratio."""
    dataset, root = e2e.STAGES[stage][1], _tiny_root(stage, tmp)
    config = e2e.stage_config(stage, paper=False)
    size = tuple(config.data.image_size)
    build_dataset(dataset, root, tmp / "tfds", image_size=size)
    config.data.manual_dir, config.data.data_dir = str(root), str(tmp / "tfds")
    config.data.stored_size = size
    builder = datasets.open_dataset(config.data)

    task, mesh = make_task(config), state_lib.data_mesh()
    batches = DevicePrefetcher(
        input_pipeline.create_train_iterator(builder, config.data),
        lambda b: step_lib.put_batch(b, mesh),
        config.train.prefetch_to_device,
    )
    one, batch = next(batches)
    rng = jax.random.PRNGKey(0)
    variables = state_lib.init_variables(task, rng, one, mesh)
    tx = optimizer.create_optimizer(config.train, 1000, task.param_labels(variables["params"]), 100)
    st = state_lib.create_train_state(variables, tx, rng, mesh)
    dtype = jnp.dtype(config.train.compute_dtype)
    fn = step_lib.make_train_step(task, tx, mesh, dtype, tuple(config.train.cast_batch_keys))
    step = fn.lower(st, one).compile()
    st, m = step(st, one)
    jax.block_until_ready(m)
    gc.collect()
    gc.freeze()  # as the train loop does (avs_jax/train/loop.py)

    log_every = config.train.log_every
    seconds = {"step": 0.0, "command path": 0.0}
    try:
        for b in range(blocks):
            for path in ("step", "command path") if b % 2 else ("command path", "step"):
                jax.block_until_ready(st)
                pending = []
                t0 = time.perf_counter()
                for i in range(block_steps):
                    dev = one if path == "step" else next(batches)[0]
                    st, m = step(st, dev)
                    if path == "command path":
                        pending.append(m)
                        if (i + 1) % log_every == 0:
                            jax.device_get(pending)
                            pending.clear()
                jax.block_until_ready((st, m))
                seconds[path] += time.perf_counter() - t0
    finally:
        batches.close()
        gc.unfreeze()
    samples = blocks * block_steps * batch
    rates = {k: samples / v for k, v in seconds.items()}
    return {
        **_row(stage, size, batch, blocks, block_steps),
        "step_samples_per_s": round(rates["step"], 2),
        "command_path_samples_per_s": round(rates["command path"], 2),
        "ratio": round(rates["command path"] / rates["step"], 3),
    }


def _row(stage: str, hw, batch: int, blocks: int, block_steps: int) -> dict:
    """The fields of every printed row: what ran, on what."""
    return {
        "stage": stage,
        "hw": list(hw),
        "batch": batch,
        "blocks": blocks,
        "block_steps": block_steps,
        "cpu": e2e.cpu_name(),
        "device": jax.devices()[0].device_kind,
    }


def _alternating(prefetcher_cls: type, block_steps: int) -> type:
    """`prefetcher_cls` whose batches 1..block_steps are read, the next block_steps the last
    read batch again (nothing read), and so on; call n is step n of a fresh run."""

    class Alternating(prefetcher_cls):
        calls, last = 0, None

        def __next__(self):
            self.calls += 1
            if ((self.calls - 1) // block_steps) % 2 and self.last is not None:
                return self.last
            self.last = super().__next__()
            return self.last

    return Alternating


def alternating_rates(
    windows: list[tuple[int, float]], block_steps: int, batch: int
) -> dict[str, float]:
    """Samples/s of the windows that read the input ("read") and of those that did not ("none
    read"), each over its windows' summed time. windows: (last step, samples/s) of each logged
    window of `block_steps` steps, as `_alternating` ran them (block k reads when k is even)."""
    seconds, samples = {"read": 0.0, "none read": 0.0}, {"read": 0, "none read": 0}
    for step, rate in windows:
        path = "none read" if ((step - 1) // block_steps) % 2 else "read"
        seconds[path] += block_steps * batch / rate
        samples[path] += block_steps * batch
    return {k: samples[k] / seconds[k] for k in seconds}


def measure_in_command(stage: str, tmp: Path, blocks: int, block_steps: int) -> dict:
    """The training command's windows that read the input against its windows that do not."""
    from absl import app  # noqa: PLC0415

    from avs_jax import main as main_lib  # noqa: PLC0415
    from avs_jax.train import loop  # noqa: PLC0415
    from avs_jax.train.metric_writers import read_metrics  # noqa: PLC0415

    root = _tiny_root(stage, tmp)
    warmup = 2  # windows: the compile, the heap's second freeze
    steps = (warmup + 2 * blocks) * block_steps
    config = e2e.stage_config(stage, paper=False)
    batch = int(config.data.batch_size)
    workdir = tmp / "run"
    args = (stage, False, root, workdir, tmp / "tfds", batch, steps, block_steps, "float32", None)
    # From "avs_jax.main" on: the flags of the user's command.
    argv = e2e.train_command(*args, stored=True)[2:]
    real, bench_argv = loop.DevicePrefetcher, sys.argv
    loop.DevicePrefetcher = _alternating(real, block_steps)
    sys.argv = argv  # ml_collections reads the config's overrides from sys.argv
    try:
        app.run(main_lib.main, argv=argv, flags_parser=main_lib.parse_flags)
    except SystemExit as e:  # app.run exits when main returns
        if e.code:
            raise
    finally:
        loop.DevicePrefetcher, sys.argv = real, bench_argv
    windows = [(r["step"], r["samples_per_s"]) for r in read_metrics(str(workdir), "train")]
    rates = alternating_rates(windows[warmup:], block_steps, batch)
    return {
        "mode": "in_command",
        **_row(stage, config.data.image_size, batch, blocks, block_steps),
        "no_read_samples_per_s": round(rates["none read"], 2),
        "command_samples_per_s": round(rates["read"], 2),
        "ratio": round(rates["read"] / rates["none read"], 3),
        "windows": [round(r, 1) for _, r in windows[warmup:]],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("avsnet", "relative"), default="avsnet")
    p.add_argument(
        "--blocks",
        type=int,
        default=0,
        help="blocks of each path, alternating (0: 40, 12 with --in_command)",
    )
    p.add_argument("--block_steps", type=int, default=10, help="steps per block")
    p.add_argument(
        "--in_command", action="store_true", help="in the training command (avs_jax.main)"
    )
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_loop_") as tmp:
        if a.in_command:
            row = measure_in_command(a.stage, Path(tmp), a.blocks or 12, a.block_steps)
        else:
            row = measure(a.stage, Path(tmp), a.blocks or 40, a.block_steps)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
