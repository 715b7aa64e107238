"""The align-corners resize as gathers or as matmuls in the tiny AVS-Net train step:
`python bench/resize_lowering.py [--steps=N] [--repeats=R]`.

avs_jax resizes with two interpolation-matrix matmuls on CPU and with gathers elsewhere
(`avs_jax.models.layers.use_matmul_resize`). This times the tiny AVS-Net step (the one whose
DPT decoder and metric-bins head resize at every scale) under each, forced with
`AVS_JAX_RESIZE`, alternating in fresh processes `--repeats` times (a shared machine drifts
between runs), and prints a Markdown table for bench/RESULTS.md. Runs on any backend: on a GPU
it answers whether the matmul form would pay there too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def measure(lowering: str, steps: int, size: str) -> dict:
    env = {**os.environ, "AVS_JAX_RESIZE": lowering}
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "train_step.py"),
            "--stage=avsnet",
            f"--size={size}",
            f"--steps={steps}",
            "--no_torch",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--size", default="tiny", choices=("tiny", "paper"))
    a = p.parse_args(argv)
    print(
        "| run | resize | device | compile s | step ms | samples/s | loss after warm-up + steps "
        "| load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run in range(1, a.repeats + 1):
        for lowering in ("gather", "matmul"):
            r = measure(lowering, a.steps, a.size)
            print(
                f"| {run} | {lowering} | {r['device']} | {r['compile_s']} | {r['step_ms']} | "
                f"{r['samples_per_s']} | {r['loss']:.6f} | {r['load_avg']:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
