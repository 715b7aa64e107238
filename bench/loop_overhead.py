"""What the input side costs a step, measured in one process: the command's path against the step.

  python bench/loop_overhead.py [--stage=avsnet|relative] [--blocks=40] [--block_steps=10]

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


def measure(stage: str, tmp: Path, blocks: int, block_steps: int) -> dict:
    """Alternating blocks of the two paths; samples/s of each and their ratio."""
    dataset = e2e.STAGES[stage][1]
    root = e2e.tiny_root(
        dataset, tmp / "root", e2e.TINY_EXAMPLES + (40 if dataset == "bv1_triples" else 0)
    )
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
        "stage": stage,
        "hw": list(size),
        "batch": batch,
        "blocks": blocks,
        "block_steps": block_steps,
        "step_samples_per_s": round(rates["step"], 2),
        "command_path_samples_per_s": round(rates["command path"], 2),
        "ratio": round(rates["command path"] / rates["step"], 3),
        "cpu": e2e.cpu_name(),
        "device": jax.devices()[0].device_kind,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("avsnet", "relative"), default="avsnet")
    p.add_argument("--blocks", type=int, default=40, help="blocks of each path, alternating")
    p.add_argument("--block_steps", type=int, default=10, help="steps per block")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_loop_") as tmp:
        print(json.dumps(measure(a.stage, Path(tmp), a.blocks, a.block_steps)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
