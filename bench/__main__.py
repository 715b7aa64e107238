"""One runner for every benchmark: `python -m bench [--paper] [--quickstart_workdir=DIR]`.

Runs, each in its own process (so memory and XLA flags do not leak between them):
  * the training step of both stages, tiny sizes (and paper sizes with --paper), in JAX and,
    with $TORCH_PYTHON pointing at a Python that has torch, the same networks in PyTorch;
  * the tiny steps on 1 and on 4 forced CPU devices (the data-parallel path);
  * the input pipelines (bench/input_pipeline.py) and the evaluation at 720×1280;
  * the training command end to end against the step alone, and the host's CPU ms per example
    (bench/end_to_end.py, tiny sizes; with --paper also the paper sizes), into its own section;
  * the quickstart's elapsed time, read from DIR/claims.json (--quickstart_workdir).
and writes the figures under "## Summary (python -m bench)" in bench/RESULTS.md, naming the
machine. FLOP counts are XLA's cost analysis of the compiled step; the machine's peak is
cores × clock × FLOPs per cycle (from the CPU flags; --peak_gflops overrides it).
With --accelerator it runs bench/accelerator.py instead: the paper-size steps of both stages on
the GPU, fp32 and bf16, beside PyTorch on the same device, with MFU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable
sys.path.insert(0, HERE)


def _json_lines(cmd: list[str], env: dict | None = None, timeout: int = 3600) -> list[dict]:
    res = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    out = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode or not out:
        return [{"error": (res.stderr or res.stdout)[-400:], "cmd": " ".join(cmd)}]
    return out


def cpu_peak_gflops() -> tuple[float, str]:
    """Peak fp32 GFLOP/s of this CPU: cores × max clock × FLOPs per cycle (FMA width)."""
    text = open("/proc/cpuinfo").read()
    flags = re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    cores = os.cpu_count() or 1
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    return cores * ghz * per_cycle, f"{cores} cores × {ghz:.2f} GHz × {per_cycle} FLOP/cycle"


def machine() -> str:
    text = open("/proc/cpuinfo").read()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    import jax  # noqa: PLC0415

    return (
        f"{model.group(1) if model else platform.processor()}, {os.cpu_count()} cores, "
        f"{platform.machine()}, jax {jax.__version__} ({jax.devices()[0].platform}), "
        f"{datetime.date.today()}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper", action="store_true", help="also the paper sizes (slow on CPU)")
    p.add_argument("--quickstart_workdir", default="")
    p.add_argument("--peak_gflops", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--skip_pipeline", action="store_true")
    p.add_argument("--skip_end_to_end", action="store_true")
    p.add_argument(
        "--accelerator",
        action="store_true",
        help="paper-size steps on the GPU/TPU beside PyTorch, with MFU "
        "(bench/accelerator.py); writes the accelerator section instead",
    )
    p.add_argument(
        "--rows",
        default=os.path.join(HERE, "accelerator_rows.jsonl"),
        help="--accelerator: JSON lines appended as each measurement finishes",
    )
    p.add_argument(
        "--render_only",
        action="store_true",
        help="--accelerator: write the section from --rows without measuring",
    )
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=0.0,
        help="--accelerator: the device's dense bf16 peak, if not in the table",
    )
    p.add_argument(
        "--run_timeout",
        type=float,
        default=900,
        help="--accelerator: seconds each measurement may take",
    )
    p.add_argument(
        "--skip_done",
        action="store_true",
        help="--accelerator: measure only what --rows holds no result of yet",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="--accelerator: tiny sizes, a quick check of the runner on any machine",
    )
    a = p.parse_args(argv)
    if a.accelerator:
        import accelerator  # noqa: PLC0415

        if a.tiny and a.rows == p.get_default("rows"):  # keep the recorded paper rows apart
            a.rows = os.path.join(tempfile.gettempdir(), "avs_jax_accelerator_tiny.jsonl")
        return accelerator.main(
            a.rows,
            max(a.steps, 10),
            a.peak_tflops,
            a.render_only,
            os.environ.get("TORCH_PYTHON", ""),
            "tiny" if a.tiny else "paper",
            a.run_timeout,
            a.skip_done,
        )
    peak, peak_how = (a.peak_gflops, "given") if a.peak_gflops else cpu_peak_gflops()
    rows = []
    sizes = ["tiny"] + (["paper"] if a.paper else [])
    for stage in ("avsnet", "monodepth2"):
        for size in sizes:
            steps = a.steps if size == "tiny" else 2
            rows += _json_lines(
                [
                    PY,
                    "bench/train_step.py",
                    f"--stage={stage}",
                    f"--size={size}",
                    f"--steps={steps}",
                ]
            )
    devices = []
    for stage in ("avsnet", "monodepth2"):
        for n in (1, 4):
            devices += _json_lines(
                [
                    PY,
                    "bench/train_step.py",
                    f"--stage={stage}",
                    "--size=tiny",
                    "--batch=8",
                    f"--steps={a.steps}",
                    "--no_torch",
                ],
                env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"},
            )
    evaluation = _json_lines([PY, "bench/evaluate.py"])
    if not a.skip_pipeline:
        subprocess.run([PY, "bench/input_pipeline.py"], cwd=ROOT, check=False)
    if not a.skip_end_to_end:  # each writes its own "## End to end (...)" section of RESULTS.md
        subprocess.run([PY, "bench/end_to_end.py"], cwd=ROOT, check=False)
        if a.paper:
            cmd = [PY, "bench/end_to_end.py", "--paper", "--skip_host"]
            subprocess.run(cmd, cwd=ROOT, check=False)
    quick = None
    if a.quickstart_workdir:
        with open(os.path.join(a.quickstart_workdir, "claims.json")) as f:
            quick = json.load(f)

    lines = [
        "## Summary (python -m bench)",
        "",
        f"Machine: {machine()}. Peak fp32 estimate {peak:.0f} GFLOP/s ({peak_how}). "
        "Load average at each measurement in the last column (other jobs inflate times).",
        "",
        "### Training step, JAX beside PyTorch",
        "",
        "| stage | size | H×W | batch | framework | compile s | step ms | samples/s | "
        "GFLOP/step (XLA) | GFLOP/s | % of peak | peak RSS MB | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    jax_rows, ratios = {}, []
    for r in rows:
        if "error" in r or "skipped" in r:
            lines.append(
                f"| {r.get('stage', '?')} | {r.get('size', '?')} | | | "
                f"{r.get('framework', '?')} | {r.get('skipped') or r.get('error', '')[:80]} "
                "| | | | | | | |"
            )
            continue
        fw = r.get("framework")
        key = (r["stage"], r["size"])
        if fw == "jax":
            step_ms, sps, gf = r["step_ms"], r["samples_per_s"], r["gflop_per_step"]
            hw, comp, rss = "×".join(map(str, r["hw"])), r["compile_s"], r["peak_rss_mb"]
            jax_rows[key] = r
        else:
            step_ms = r.get("step_ms") or round(1000 / r["steps_per_s"], 1)
            # Same network and batch: XLA's FLOP count of the JAX step is the work done here too.
            sps = r.get("samples_per_s")
            gf = r.get("gflop_per_step") or jax_rows.get(key, {}).get("gflop_per_step", 0)
            hw = f"{r.get('height', '')}×{r.get('width', '')}"
            comp, rss = r.get("first_step_s", ""), r.get("peak_rss_mb", "")
            if key in jax_rows and sps:
                ratios.append((key, jax_rows[key]["samples_per_s"] / sps))
        gfs = gf / (step_ms / 1000) if gf and step_ms else 0
        load = (
            f"{r['load_avg']:.2f}"
            if "load_avg" in r
            else str(r.get("loadavg_before", "")).split(" ")[0]
        )
        lines.append(
            f"| {r['stage']} | {r['size']} | {hw} | {r['batch']} | {fw} | {comp} | "
            f"{step_ms} | {sps} | {gf or '–'} | {gfs:.1f} | {100 * gfs / peak:.1f} | "
            f"{rss} | {load} |"
        )
    if ratios:
        lines += [
            "",
            "JAX / PyTorch throughput (samples/s), same machine, same batch: "
            + ", ".join(f"{stage} {size} {ratio:.2f}×" for (stage, size), ratio in ratios)
            + ".",
        ]
    lines += [
        "",
        "### Data parallel: 1 vs 4 forced CPU devices (same global batch 8)",
        "",
        "| stage | devices | step ms | samples/s | compile s |",
        "|---|---|---|---|---|",
    ]
    for r in devices:
        if "error" not in r:
            lines.append(
                f"| {r['stage']} | {r['devices']} | {r['step_ms']} | "
                f"{r['samples_per_s']} | {r['compile_s']} |"
            )
    lines += ["", "### Evaluation at 720×1280 ground truth", ""]
    for r in evaluation:
        lines.append("```\n" + json.dumps(r) + "\n```")
    if quick:
        n_hold = sum(c["holds"] for c in quick["claims"])
        lines += [
            "",
            "### Quickstart",
            "",
            f"`python -m avs_jax.main --config=configs/quickstart.py` from an empty workdir: "
            f"{quick['seconds'] / 60:.1f} min; {n_hold}/{len(quick['claims'])} claims hold.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    path = os.path.join(HERE, "RESULTS.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    head = old.split("## Summary (python -m bench)")[0].rstrip() + "\n\n"
    rest = (
        old.split("## Summary (python -m bench)")[1]
        if "## Summary (python -m bench)" in old
        else ""
    )
    tail = rest[rest.find("\n## ", 1) :] if "\n## " in rest else ""
    with open(path, "w") as f:
        f.write(head + text + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
