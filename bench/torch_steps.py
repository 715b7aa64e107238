"""Times the PyTorch twin of a training step (bench/torch_nets.py) and prints one JSON line.

The PyTorch column of the side-by-side train-step benchmark (issues 5, 6, 9): our JAX bench runs
this script as a subprocess with a Python that has torch (e.g. /work/venv-torch-bench/bin/python),
so the JAX environment never needs torch. Without torch it prints "torch not installed" on stderr
and a JSON line with `"skipped": "torch not installed"`, exit status 0.

    python bench/torch_steps.py --stage=avsnet --size=tiny --steps=10
    python bench/torch_steps.py --stage=monodepth2 --size=paper --batch=12 --steps=3
    python bench/torch_steps.py --selfcheck

On a GPU (`--device=cuda`), `--amp=bf16` runs PyTorch's mixed precision, `--tf32` allows TF32
in fp32 matmuls (JAX's GPU default; PyTorch's is off for matmuls) and `--cudnn_benchmark`
autotunes the convolutions (as XLA does); the peak device memory is reported too.

Timing: `--warmup` steps first (not timed; the first one is reported as `first_step_s`, the
PyTorch analogue of a compile time), then `--steps` steps each timed on its own; every step ends
with `loss.item()`, so the clock sees finished work. Peak memory is the process's peak resident
set size (VmHWM of /proc/self/status), model and data included.
`cpu_ms_per_step` is the process CPU time per timed step: less sensitive to other load than the
wall clock when `--threads=1` (with more threads, OpenMP's spin-waiting inflates it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time


def _loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def peak_rss_mb() -> float:
    """This process's peak resident set, MB: VmHWM, which starts afresh at exec.

    (`ru_maxrss` does not: a child started by a process holding 16 GB reports at least 16 GB,
    which made the PyTorch column copy the JAX process's peak when run from bench/train_step.py.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _import_nets():
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_nets

    return torch_nets


def make_batch(tn, stage: str, batch: int, height: int, width: int, seed: int = 0) -> dict:
    """Random inputs of the benchmark, NCHW: a smooth shifted texture for the triples, so the
    photometric loss has something to learn; random depth with ~20% invalid pixels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if stage == "monodepth2":
        base = torch.rand(batch, 3, height // 4, width // 4 + 4, generator=g)
        base = torch.nn.functional.interpolate(
            base, (height, width + 16), mode="bilinear", align_corners=False
        )
        # Frames t-20, t, t+20: the same texture shifted horizontally (a sideways camera motion).
        frames = torch.stack([base[..., 8 + s : 8 + s + width] for s in (-4, 0, 4)], 1)
        k = torch.tensor(
            [[0.58 * width, 0, 0.5 * width], [0, 1.92 * height, 0.5 * height], [0, 0, 1]],
            dtype=torch.float32,
        )
        return {"frames": frames.contiguous(), "intrinsics": k.expand(batch, 3, 3).contiguous()}
    image = torch.rand(batch, 3, height, width, generator=g)
    echo = torch.rand(batch, 2, height, width, generator=g)
    # Depth correlated with the image, so the SILog has a signal to fit.
    depth = 1.0 + 20.0 * image.mean(1)
    depth = depth * (torch.rand(batch, height, width, generator=g) > 0.2)
    return {"image": image, "echo": echo, "depth": depth}


def build(
    tn,
    stage: str,
    size: str,
    height: int,
    width: int,
    total_steps: int,
    lr: float | None = None,
    device: str = "cpu",
    amp_dtype=None,
):
    """(step function taking a batch, number of parameters), the networks on `device`."""
    if stage == "monodepth2":
        models, cfg = tn.build_monodepth2(size)
        for m in models.values():
            m.to(device)
        opt, sched = tn.monodepth2_optimizer(models, cfg)
        if lr is not None:
            for grp in opt.param_groups:
                grp["lr"] = lr
        n = sum(p.numel() for m in models.values() for p in m.parameters())
        return (lambda b: tn.monodepth2_train_step(models, opt, b, cfg, sched, amp_dtype)), n
    model, _ = tn.build_avsnet(size, image_size=(height, width))
    model.to(device)
    opt, sched = tn.avsnet_optimizer(model, total_steps=total_steps, lr=lr)
    n = sum(p.numel() for p in model.parameters())
    return (lambda b: tn.avsnet_train_step(model, opt, b, sched, amp_dtype)), n


def run(tn, args) -> dict:
    import torch

    presets = tn.MONODEPTH2_SIZES if args.stage == "monodepth2" else tn.AVSNET_SIZES
    preset = presets[args.size]
    h = args.height or preset["image_size"][0]
    w = args.width or preset["image_size"][1]
    bsz = args.batch or preset["batch"]
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if args.tf32:  # what JAX does by default on GPU for fp32 matmuls and convolutions
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    step, n_params = build(
        tn,
        args.stage,
        args.size,
        h,
        w,
        args.warmup + args.steps + 1,
        device=args.device,
        amp_dtype=amp_dtype,
    )
    batch = {k: v.to(args.device) for k, v in make_batch(tn, args.stage, bsz, h, w).items()}
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    load_before = _loadavg()
    t0 = time.perf_counter()
    losses = [step(batch)]
    first = time.perf_counter() - t0
    for _ in range(max(args.warmup - 1, 0)):
        losses.append(step(batch))
    times = []
    cpu0 = time.process_time()
    for _ in range(args.steps):
        t = time.perf_counter()
        losses.append(step(batch))
        times.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu0) / args.steps
    mean = statistics.fmean(times)
    flops = count_flops(step, batch) if args.flops else None
    return {
        "framework": "pytorch",
        "torch": torch.__version__,
        "stage": args.stage,
        "size": args.size,
        "batch": bsz,
        "height": h,
        "width": w,
        "params": n_params,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "warmup_steps": args.warmup,
        "steps": args.steps,
        "first_step_s": round(first, 4),
        "step_ms_mean": round(1e3 * mean, 2),
        "step_ms_median": round(1e3 * statistics.median(times), 2),
        "step_ms_min": round(1e3 * min(times), 2),
        "steps_per_s": round(1.0 / mean, 4),
        "samples_per_s": round(bsz / mean, 4),
        "cpu_ms_per_step": round(1e3 * cpu, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "amp": args.amp,
        "tf32": args.tf32,
        "cudnn_benchmark": args.cudnn_benchmark,
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
        "gflop_per_step": None if flops is None else round(flops / 1e9, 3),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
    }


def count_flops(step, batch) -> float:
    """FLOPs of one train step (forward + backward) by torch's FlopCounterMode.

    It counts matmuls, convolutions and attention (2 per multiply-add), not elementwise ops, so
    it is a lower bound to compare with XLA's cost analysis. Runs one extra, untimed step.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(batch)
    return float(counter.get_total_flops())


def selfcheck(tn, steps: int = 12) -> bool:
    """The tiny nets of both stages lower their loss on a fixed random batch over a few steps."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    ok = True
    for stage in ("avsnet", "monodepth2"):
        torch.manual_seed(0)
        preset = (tn.AVSNET_SIZES if stage == "avsnet" else tn.MONODEPTH2_SIZES)["tiny"]
        h, w = preset["image_size"]
        # A larger step than the paper's lr so that a dozen steps show the descent.
        step, n = build(tn, stage, "tiny", h, w, steps + 1, lr=1e-3)
        batch = make_batch(tn, stage, preset["batch"], h, w)
        losses = [step(batch) for _ in range(steps)]
        first, last = losses[0], sum(losses[-3:]) / 3
        good = all(map(lambda v: v == v, losses)) and last < first
        ok &= good
        print(
            json.dumps(
                {
                    "selfcheck": stage,
                    "params": n,
                    "loss_first": round(first, 5),
                    "loss_last3_mean": round(last, 5),
                    "ok": good,
                }
            ),
            flush=True,
        )
    return ok


def torch_column(
    stage: str, size: str, python: str | None = None, timeout: float | None = None, **options
) -> dict:
    """Runs this script in a subprocess with `python` (default $TORCH_PYTHON) and returns its JSON.

    For the JAX bench (which must not import torch): `options` are the command-line flags, e.g.
    `torch_column("monodepth2", "paper", batch=12, steps=3, threads=2)`. Without a torch Python
    (no `python`, no $TORCH_PYTHON, or one without torch) returns `{"skipped": ...}`.
    """
    import subprocess

    python = python or os.environ.get("TORCH_PYTHON")
    if not python:
        return {
            "framework": "pytorch",
            "stage": stage,
            "size": size,
            "skipped": "torch not installed (no $TORCH_PYTHON)",
        }
    cmd = [python, os.path.abspath(__file__), f"--stage={stage}", f"--size={size}"]
    cmd += [f"--{k}={v}" for k, v in options.items()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = res.stdout.strip().splitlines()
    if res.returncode or not lines:
        return {
            "framework": "pytorch",
            "stage": stage,
            "size": size,
            "error": (res.stderr or res.stdout).strip()[-500:],
        }
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("avsnet", "monodepth2"), default="avsnet")
    p.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    p.add_argument("--batch", type=int, default=0, help="0: the preset's batch")
    p.add_argument("--height", type=int, default=0, help="0: the preset's size")
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (>= 1)")
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--amp",
        default="none",
        choices=("none", "bf16", "fp16"),
        help="mixed precision: the forward pass (and Monodepth2's loss) under torch.autocast",
    )
    p.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 in fp32 matmuls and convolutions (JAX's GPU default)",
    )
    p.add_argument(
        "--cudnn_benchmark",
        action="store_true",
        help="torch.backends.cudnn.benchmark: autotune the convolutions",
    )
    p.add_argument(
        "--flops",
        action="store_true",
        help="also count the step's matmul/conv FLOPs (one extra untimed step)",
    )
    p.add_argument(
        "--selfcheck",
        action="store_true",
        help="check that the loss falls on a fixed batch for both tiny stages",
    )
    args = p.parse_args(argv)
    args.warmup = max(args.warmup, 1)
    tn = _import_nets()
    if tn is None:
        print("torch not installed", file=sys.stderr)
        print(
            json.dumps(
                {
                    "framework": "pytorch",
                    "stage": args.stage,
                    "size": args.size,
                    "skipped": "torch not installed",
                }
            )
        )
        return 0
    if args.selfcheck:
        return 0 if selfcheck(tn) else 1
    print(json.dumps(run(tn, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
