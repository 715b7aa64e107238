"""XLA:CPU's YNNPACK choices for our tiny train steps: `python bench/cpu_flags.py [--steps=N]`.

avs_jax sets `--xla_cpu_experimental_ynn_fusion_type=individual_dot` on jaxlib 0.10
(`avs_jax/runtime_defaults.py`): YNNPACK gets the dots, XLA's own emitters the convolutions and
reductions. This measures that default against XLA's own choice (YNNPACK for dots, convolutions
and reductions) and against no YNNPACK, each in its own process, and prints a Markdown table
for bench/RESULTS.md. CPU only; the flags mean nothing to a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FLAG = "--xla_cpu_experimental_ynn_fusion_type"
SETTINGS = (  # (label, XLA_FLAGS); a flag set here wins over avs_jax's default
    ("avs_jax default: YNNPACK dots only", ""),
    (
        "XLA's default: YNNPACK dots, convolutions, reductions",
        f"{FLAG}=individual_dot,individual_convolution,reduce",
    ),
    ("no YNNPACK", f"{FLAG}="),
)


def measure(stage: str, xla_flags: str, steps: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "train_step.py"),
            f"--stage={stage}",
            "--size=tiny",
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
    a = p.parse_args(argv)
    print(
        "| stage | YNNPACK | compile s | step ms | samples/s | loss after warm-up + steps | load |"
    )
    print("|---|---|---|---|---|---|---|")
    for stage in ("avsnet", "monodepth2"):
        for label, flags in SETTINGS:
            r = measure(stage, flags, a.steps)
            print(
                f"| {stage} tiny | {label} | {r['compile_s']} | {r['step_ms']} | "
                f"{r['samples_per_s']} | {r['loss']:.6f} | {r['load_avg']:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
