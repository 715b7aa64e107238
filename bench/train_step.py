"""Training-step throughput of both stages in JAX, beside the same networks in PyTorch.

  python bench/train_step.py --stage=avsnet --size=tiny [--batch=N] [--steps=K] [--torch_python=P]
  python bench/train_step.py --stage=monodepth2 --size=paper --batch=12
  python bench/train_step.py --stage=avsnet --size=tiny --back_to_back   # step-only throughput

Builds the stage's Task and the train core's jitted step (the exact step `python -m avs_jax.main`
runs: donated state, ("data",) mesh, optimiser of the config), feeds it a fixed random batch and
reports: compile time, steps/s, samples/s, peak host memory, XLA's FLOP count per step and the
achieved FLOP/s. With a PyTorch interpreter (`--torch_python` or $TORCH_PYTHON; torch is never a
dependency of avs_jax) the same network's PyTorch step (bench/torch_steps.py) runs in a
subprocess on the same machine for the side-by-side column. Prints one JSON line per framework.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from avs_jax import config_files  # noqa: E402
from avs_jax.data import audio  # noqa: E402
from avs_jax.train import optimizer  # noqa: E402
from avs_jax.train import state as state_lib
from avs_jax.train import step as step_lib
from avs_jax.train.tasks import make_task  # noqa: E402

PRESETS = {  # (config file, arg, default batch)
    ("avsnet", "tiny"): ("avsnet", "tiny", 4),
    ("avsnet", "paper"): ("avsnet", "", 2),
    ("monodepth2", "tiny"): ("monodepth2", "tiny", 4),
    ("monodepth2", "paper"): ("monodepth2", "", 12),
}


def load_config(stage: str, size: str):
    name, arg, batch = PRESETS[(stage, size)]
    return config_files.load_config(name, arg), batch


def random_batch(config, batch: int, rng: np.random.Generator, raw: bool = False) -> dict:
    """A random training batch as the pipeline makes it: host-made (float images, STFT echo,
    frames_aug), or with ``raw`` as `config.data.device_prep` makes it (uint8 images; stage 1 the
    waveform), so that the step also does the STFT and augmentation that the device then does."""
    h, w = config.data.image_size
    if raw:
        return _raw_batch(config, batch, rng)
    if config.task == "relative":
        k = np.array([[0.58 * w, 0, w / 2], [0, 1.92 * h, h / 2], [0, 0, 1]], np.float32)
        frames = rng.uniform(size=(batch, 3, h, w, 3)).astype(np.float32)
        return {
            "frames": frames,
            "frames_aug": frames,
            "intrinsics": np.broadcast_to(k, (batch, 3, 3)).copy(),
        }
    return {
        "image": rng.uniform(size=(batch, h, w, 3)).astype(np.float32),
        "echo": rng.uniform(size=(batch, h, w, 2)).astype(np.float32),
        "depth": rng.uniform(1, 20, size=(batch, h, w)).astype(np.float32),
    }


def _raw_batch(config, batch: int, rng: np.random.Generator) -> dict:
    h, w = config.data.image_size
    if config.task == "relative":
        k = np.array([[0.58 * w, 0, w / 2], [0, 1.92 * h, h / 2], [0, 0, 1]], np.float32)
        return {
            "frames": rng.integers(0, 256, size=(batch, 3, h, w, 3), dtype=np.uint8),
            "intrinsics": np.broadcast_to(k, (batch, 3, 3)).copy(),
            "poses": np.broadcast_to(np.eye(4, dtype=np.float32), (batch, 3, 4, 4)).copy(),
            "has_pose": np.ones(batch, bool),
        }
    stft = config.data.stft.to_dict()
    n = audio.device_wave_length(stft, config.data.max_depth)
    out = {
        "image": rng.integers(0, 256, size=(batch, h, w, 3), dtype=np.uint8),
        "wave": rng.normal(scale=0.05, size=(batch, 2, n)).astype(np.float32),
        "depth": rng.uniform(1, 20, size=(batch, h, w)).astype(np.float32),
    }
    if not stft["cut_to_max_depth"]:
        out["wave_length"] = np.full(batch, n, np.int32)
    return out


sys.path.insert(0, os.path.join(ROOT, "bench"))
from torch_steps import peak_rss_mb  # noqa: E402  (imports no torch itself)


def _flops(stage) -> float:
    """XLA's cost-analysis FLOP count of a Lowered or Compiled step (0 when it has none)."""
    try:
        cost = stage.cost_analysis()
    except Exception:  # noqa: BLE001  (some backends implement no cost analysis)
        return 0.0
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def _setup(
    stage: str, size: str, batch: int | None, dtype: str, abstract: bool = False, raw: bool = False
):
    """(config, batch size, device batch, train state, step fn, params) of the stage's step;
    `abstract`: the state as shapes only (jax.eval_shape), enough to lower the step; `raw`: fed
    raw batches (`random_batch`)."""
    config, default_batch = load_config(stage, size)
    batch = batch or default_batch
    config.train.compute_dtype = dtype
    config.model.dtype = dtype
    task = make_task(config)
    mesh = state_lib.data_mesh()
    host = random_batch(config, batch, np.random.default_rng(0), raw)
    dev = step_lib.put_batch(host, mesh)
    rng = jax.random.PRNGKey(0)
    init = lambda: state_lib.init_variables(task, rng, dev, mesh)  # noqa: E731
    variables = jax.eval_shape(init) if abstract else init()
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    tx = optimizer.create_optimizer(config.train, 1000, task.param_labels(variables["params"]), 100)
    make_state = lambda: state_lib.create_train_state(variables, tx, rng, mesh)  # noqa: E731
    st = jax.eval_shape(make_state) if abstract else make_state()
    fn = step_lib.make_train_step(
        task, tx, mesh, jnp.dtype(dtype), tuple(config.train.cast_batch_keys)
    )
    return config, batch, dev, st, fn, n_params


def count_flops(stage: str, size: str, batch: int | None, dtype: str) -> dict:
    """XLA's FLOP count of the step as lowered for this backend, before optimisation: on the
    CPU the reference count of the network (GPU executables hand matmuls and convolutions to
    cuBLAS/cuDNN custom calls, which the GPU's own count leaves out). Nothing is run."""
    _, batch, dev, st, fn, n_params = _setup(stage, size, batch, dtype, abstract=True)
    flops = _flops(fn.lower(st, dev))
    return {
        "flops_reference": stage,
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "params": n_params,
        "device": jax.devices()[0].platform,
        "gflop_per_step": round(flops / 1e9, 2),
    }


def _describe(stage: str, size: str, batch: int, config, dtype: str, n_params: int) -> dict:
    """The fields every timing row starts with: what ran, on what."""
    return {
        "framework": "jax",
        "stage": stage,
        "size": size,
        "batch": batch,
        "hw": list(config.data.image_size),
        "dtype": dtype,
        "params": n_params,
        "devices": jax.device_count(),
        "device": jax.devices()[0].device_kind,
    }


def time_jax(stage: str, size: str, batch: int | None, steps: int, dtype: str) -> dict:
    config, batch, dev, st, fn, n_params = _setup(stage, size, batch, dtype)
    t0 = time.perf_counter()
    lowered = fn.lower(st, dev)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    flops = _flops(compiled)
    # The count before XLA's optimisations (the compiled count on a GPU misses the cuBLAS/cuDNN
    # custom calls). jax 0.11 on the H100 gave 0 here; bench/accelerator.py takes the
    # reference count from count_flops on the CPU instead.
    flops_hlo = _flops(lowered)
    st, m = compiled(st, dev)  # warm-up
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        st, m = compiled(st, dev)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    step_s = float(np.median(times))
    stats = jax.devices()[0].memory_stats() or {}  # None on CPU; allocator peak on GPU/TPU
    return {
        **_describe(stage, size, batch, config, dtype, n_params),
        "compile_s": round(compile_s, 2),
        "step_ms": round(1000 * step_s, 1),
        "steps_per_s": round(1 / step_s, 3),
        "samples_per_s": round(batch / step_s, 3),
        "gflop_per_step": round(flops / 1e9, 2),
        "gflop_per_s": round(flops / 1e9 / step_s, 2),
        "gflop_per_step_hlo": round(flops_hlo / 1e9, 2),
        "peak_device_mb": (
            round(stats["peak_bytes_in_use"] / 2**20) if "peak_bytes_in_use" in stats else None
        ),
        "peak_rss_mb": round(peak_rss_mb()),
        "loss": float(m["loss"]),
        "load_avg": os.getloadavg()[0],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }  # as avs_jax left them


def time_back_to_back(
    stage: str, size: str, batch: int | None, steps: int, dtype: str, raw: bool = False
) -> dict:
    """Step-only throughput as a training loop sees it: `steps` steps dispatched back to back on
    one device batch, synchronised once at the end (time_jax waits for each step, which adds the
    dispatch latency to every step). The reference of bench/end_to_end.py, with `raw` when the
    training command's step also makes its inputs (config.data.device_prep)."""
    config, batch, dev, st, fn, n_params = _setup(stage, size, batch, dtype, raw=raw)
    t0 = time.perf_counter()
    compiled = fn.lower(st, dev).compile()
    compile_s = time.perf_counter() - t0
    st, m = compiled(st, dev)  # warm-up
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        st, m = compiled(st, dev)
    jax.block_until_ready((st, m))
    dt = time.perf_counter() - t0
    return {
        **_describe(stage, size, batch, config, dtype, n_params),
        "mode": "back_to_back",
        "raw_batch": raw,
        "platform": jax.devices()[0].platform,
        "jax": jax.__version__,
        "compile_s": round(compile_s, 2),
        "steps": steps,
        "step_ms_mean": round(1000 * dt / steps, 2),
        "samples_per_s": round(batch * steps / dt, 3),
        "loss": float(m["loss"]),
        "load_avg": os.getloadavg()[0],
    }


def time_torch(stage: str, size: str, batch: int, steps: int, python: str | None) -> dict:
    from torch_steps import torch_column  # noqa: E402  (imports no torch itself)

    threads = os.cpu_count() or 1
    return torch_column(stage, size, python=python, batch=batch, steps=steps, threads=threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("avsnet", "monodepth2"), default="avsnet")
    p.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--torch_python", default=os.environ.get("TORCH_PYTHON", ""))
    p.add_argument("--no_torch", action="store_true")
    p.add_argument(
        "--back_to_back",
        action="store_true",
        help="only the JAX steps dispatched back to back, one sync at the end (no PyTorch)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="with --back_to_back: raw batches (uint8 images, waveforms), the step making the "
        "STFT and augmentation as with config.data.device_prep",
    )
    p.add_argument(
        "--flops_only",
        action="store_true",
        help="only XLA's FLOP count of the lowered step (run it with JAX_PLATFORMS=cpu)",
    )
    a = p.parse_args(argv)
    if a.flops_only:
        print(json.dumps(count_flops(a.stage, a.size, a.batch or None, a.dtype)))
        return 0
    if a.back_to_back:
        res = time_back_to_back(a.stage, a.size, a.batch or None, a.steps, a.dtype, a.raw)
        print(json.dumps(res))
        return 0
    res = time_jax(a.stage, a.size, a.batch or None, a.steps, a.dtype)
    print(json.dumps(res), flush=True)
    if not a.no_torch:
        print(
            json.dumps(time_torch(a.stage, a.size, res["batch"], a.steps, a.torch_python or None)),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
