"""Training throughput and MFU on an accelerator: `python -m bench --accelerator`.

Runs, one process after another so that no two share the device:
  * the JAX train step of both stages at the paper's sizes and batches (AVS-Net: BEiT-L/16 DPT
    at 256×512, batch 16; Monodepth2: 192×640, batch 12), in fp32 and in bf16 compute;
  * the PyTorch twins of the same networks (bench/torch_nets.py) on the same device, three ways:
    fp32 as the PyTorch originals run it (cuDNN may use TF32, matmuls may not), fp32 with TF32
    matmuls and cudnn.benchmark (what XLA does by default: TF32 and autotuned convolutions), and
    AMP bf16 (torch.autocast), the PyTorch counterpart of our bf16 compute;
  * the evaluation benchmark (bench/evaluate.py).

Each finished measurement is appended to a JSON-lines file (`--rows`) at once, so a run cut off
by a time limit keeps what it measured; the section "## Accelerator summary" of bench/RESULTS.md
is then written from that file (`--render_only` writes it from an existing file). MFU is XLA's
FLOP count of the step (lowered for the CPU, before optimisation: the same network and batch
for both frameworks and both precisions) per second over the device's dense bf16 peak; the
last column measures fp32 rows against the TF32 peak instead (none for PyTorch's default fp32,
whose matmuls are full fp32).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SECTION = "## Accelerator summary (python -m bench --accelerator)"

# Dense tensor-core peaks in TFLOP/s (vendor datasheets, SXM parts, no sparsity).
PEAK_TFLOPS = {
    "H100": {"bf16": 989.4, "tf32": 494.7},
    "H200": {"bf16": 989.4, "tf32": 494.7},
    "A100": {"bf16": 312.0, "tf32": 156.0},
}

# JAX rows measured before avs_jax turned XLA's Triton GEMM fusion off by default (2026-11-26,
# avs_jax/runtime_defaults.py) carry this suffix in the rows file: they ran with XLA's default
# (on) and record no XLA_FLAGS. The plain labels are the current default (off); both are kept
# to show what the fusion does per stage.
TRITON_ON = " (Triton GEMM on)"
PAPER_BATCH = {"avsnet": 16, "monodepth2": 12}  # configs/avsnet.py, configs/monodepth2.py
TORCH_MODES = {  # name: torch_steps.py flags
    "fp32+tf32": ["--tf32", "--cudnn_benchmark"],
    "amp-bf16": ["--amp=bf16", "--tf32", "--cudnn_benchmark"],
    "fp32 (default)": [],
}


def peaks(device: str, given: float = 0.0) -> dict[str, float]:
    """{"bf16", "tf32"} peak TFLOP/s of `device` (a device_kind string); {} when unknown."""
    if given:
        return {"bf16": given, "tf32": given / 2}
    for key, val in PEAK_TFLOPS.items():
        if key in device:
            return val
    return {}


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> list[dict]:
    try:
        res = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return [{"error": f"timed out after {timeout:.0f} s", "cmd": " ".join(cmd)}]
    out = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode or not out:
        err = res.stderr or res.stdout
        return [
            {
                "error": err if len(err) < 3000 else err[:1500] + "\n...\n" + err[-1500:],
                "cmd": " ".join(cmd),
            }
        ]
    return out


def _key(row: dict) -> tuple:
    return (
        row.get("stage"),
        row.get("framework"),
        row.get("precision"),
        row.get("bench"),
        row.get("flops_reference"),
    )


def _measured(row: dict) -> bool:
    return not ({"error", "skipped", "accelerator_run"} & row.keys())


def latest(rows: list[dict]) -> list[dict]:
    """The header of the last run (with the dates of all runs) and, per measurement, its last
    successful row (else its last error or skip), in the order first seen: reruns after a
    cut-off or a fix replace older rows."""
    headers = [r["accelerator_run"] for r in rows if "accelerator_run" in r]
    dates = sorted({h.get("date", "?") for h in headers})
    header = [{"accelerator_run": {**headers[-1], "date": ", ".join(dates)}}] if headers else []
    best: dict[tuple, dict] = {}
    for r in rows:
        if "accelerator_run" in r:
            continue
        k = _key(r)
        if _measured(r) or k not in best or not _measured(best[k]):
            best[k] = r
    return header + list(best.values())


def plan(
    py: str, torch_py: str, steps: int, size: str = "paper", device: str = "cuda"
) -> list[tuple[dict, list[str]]]:
    """(labels, command) of every measurement, most wanted first. size="tiny" (batch 4) is a
    quick check of the runner itself, on any machine."""
    batch = PAPER_BATCH if size == "paper" else {"avsnet": 4, "monodepth2": 4}
    # The FLOP count of each step, from XLA:CPU's lowering (see train_step.count_flops).
    runs = [
        (
            {"flops_reference": stage},
            [
                py,
                "bench/train_step.py",
                f"--stage={stage}",
                f"--size={size}",
                f"--batch={batch[stage]}",
                "--flops_only",
            ],
        )
        for stage in ("avsnet", "monodepth2")
    ]

    def torch_run(stage: str, mode: str) -> tuple[dict, list[str]]:
        return (
            {"stage": stage, "framework": "pytorch", "precision": mode},
            [
                torch_py,
                "bench/torch_steps.py",
                f"--stage={stage}",
                f"--size={size}",
                f"--batch={batch[stage]}",
                f"--steps={steps}",
                "--warmup=3",
                f"--device={device}",
                *TORCH_MODES[mode],
            ],
        )

    for stage in ("avsnet", "monodepth2"):
        for dtype, mode in (("float32", "fp32+tf32"), ("bfloat16", "amp-bf16")):
            runs.append(
                (
                    {"stage": stage, "framework": "jax", "precision": dtype},
                    [
                        py,
                        "bench/train_step.py",
                        f"--stage={stage}",
                        f"--size={size}",
                        f"--batch={batch[stage]}",
                        f"--steps={steps}",
                        f"--dtype={dtype}",
                        "--no_torch",
                    ],
                )
            )
            runs.append(torch_run(stage, mode))
    runs += [torch_run(stage, "fp32 (default)") for stage in ("avsnet", "monodepth2")]
    runs.append(({"bench": "evaluate"}, [py, "bench/evaluate.py"]))
    return runs


def measure(
    rows_path: str,
    steps: int,
    torch_py: str,
    timeout: float,
    size: str = "paper",
    skip_done: bool = False,
) -> None:
    """Runs `plan` and appends each result, with its labels, to `rows_path` as it finishes;
    `skip_done`: not what `rows_path` already holds a successful row of."""
    done = set()
    if skip_done and os.path.exists(rows_path):
        with open(rows_path) as f:
            done = {_key(r) for r in map(json.loads, filter(str.strip, f)) if _measured(r)}
    # Asked in a child: a JAX client in this process would hold (preallocate) device memory
    # while the measured processes run.
    probe = (
        "import jax, json; d = jax.devices()[0]; print(json.dumps({'device': d.device_kind, "
        "'platform': d.platform, 'jax': jax.__version__, 'devices': jax.device_count()}))"
    )
    info = _run([sys.executable, "-c", probe], timeout)[0]
    platform = info.get("platform", "?")
    header = {
        "accelerator_run": {
            **info,
            "cpus": os.cpu_count(),
            "size": size,
            "date": str(datetime.date.today()),
        }
    }
    with open(rows_path, "a") as f:
        f.write(json.dumps(header) + "\n")
    device = "cuda" if platform == "gpu" else "cpu"
    for labels, cmd in plan(sys.executable, torch_py, steps, size, device):
        if _key(labels) in done:
            continue
        env = {"JAX_PLATFORMS": "cpu"} if "flops_reference" in labels else None
        for row in _run(cmd, timeout, env):
            row = {**row, **labels}
            print(json.dumps(row), flush=True)
            with open(rows_path, "a") as f:
                f.write(json.dumps(row) + "\n")


def render(rows: list[dict], peak_given: float = 0.0) -> str:
    """The markdown section of bench/RESULTS.md for the rows of one accelerator run."""
    machine = next((r["accelerator_run"] for r in rows if "accelerator_run" in r), {})
    device = machine.get("device", "?")
    peak = peaks(device, peak_given)
    lines = [
        SECTION,
        "",
        f"Device: {device} ({machine.get('platform', '?')}), host {machine.get('cpus', '?')} "
        f"CPU cores, jax {machine.get('jax', '?')}, {machine.get('date', '?')}. "
        + (
            f"Dense peaks used: bf16 {peak['bf16']} TFLOP/s, TF32 {peak['tf32']} TFLOP/s."
            if peak
            else "Peak unknown for this device (pass --peak_tflops)."
        ),
        "",
        "| stage | H×W | batch | framework | precision | compile / first step s | step ms | "
        "samples/s | GFLOP/step (XLA) | TFLOP/s | MFU % (bf16 peak) | % of precision's peak "
        "| peak device GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    flops = {
        r["flops_reference"]: r["gflop_per_step"]
        for r in rows
        if "flops_reference" in r and "error" not in r
    }
    sps = {}
    for r in rows:
        if "stage" not in r or "flops_reference" in r:
            continue
        if "error" in r or "skipped" in r:
            msg = (r.get("skipped") or r["error"]).strip().splitlines()
            lines.append(
                f"| {r['stage']} | | | {r['framework']} | {r['precision']} | "
                f"{(msg[-1] if msg else '')[:100]} | | | | | | | |"
            )
            continue
        jax_row = r["framework"] == "jax"
        step_ms = r["step_ms"] if jax_row else r["step_ms_median"]
        hw = "×".join(map(str, r["hw"])) if jax_row else f"{r['height']}×{r['width']}"
        first = r["compile_s"] if jax_row else r["first_step_s"]
        gflop = flops.get(r["stage"]) or 0.0
        tflops = gflop / step_ms if step_ms else 0.0  # GFLOP per ms = TFLOP/s
        half = r["precision"].startswith("bfloat16") or r["precision"] == "amp-bf16"
        strict = r["precision"] == "fp32 (default)"
        own_peak = peak.get("bf16") if half else None if strict else peak.get("tf32")
        mem = r.get("peak_device_mb")
        samples = r["batch"] * 1000.0 / step_ms
        sps[(r["stage"], r["framework"], r["precision"])] = samples
        lines.append(
            f"| {r['stage']} | {hw} | {r['batch']} | {r['framework']} | {r['precision']} | "
            f"{first:.1f} | {step_ms:.1f} | {samples:.1f} | {gflop:.1f} | {tflops:.2f} | "
            + (f"{100 * tflops / peak['bf16']:.1f}" if peak else "–")
            + " | "
            + (f"{100 * tflops / own_peak:.1f}" if own_peak else "–")
            + " | "
            + (f"{mem / 1024:.1f}" if mem else "–")
            + " |"
        )
    ratios = []
    for stage in ("avsnet", "monodepth2"):
        for ours, theirs in (
            ("float32", "fp32+tf32"),
            ("float32", "fp32 (default)"),
            ("bfloat16", "amp-bf16"),
            ("float32" + TRITON_ON, "fp32+tf32"),
            ("bfloat16" + TRITON_ON, "amp-bf16"),
        ):
            a, b = sps.get((stage, "jax", ours)), sps.get((stage, "pytorch", theirs))
            if a and b:
                ratios.append(f"{stage} JAX {ours} / PyTorch {theirs}: {a / b:.2f}×")
        best = {
            fw: max(
                ((v, p) for (s, f, p), v in sps.items() if s == stage and f == fw), default=None
            )
            for fw in ("jax", "pytorch")
        }
        if best["jax"] and best["pytorch"]:
            (vj, pj), (vt, pt) = best["jax"], best["pytorch"]
            ratios.append(f"{stage} fastest JAX ({pj}) / fastest PyTorch ({pt}): {vj / vt:.2f}×")
    if ratios:
        lines += ["", "Throughput ratios (samples/s, same device, same batch):", ""]
        lines += [f"- {r}" for r in ratios]
    for r in rows:
        if r.get("bench") == "evaluate" and "error" in r:
            lines += [
                "",
                "Evaluation benchmark (bench/evaluate.py): failed on this device "
                "(its error output is in the rows file).",
            ]
        if r.get("bench") == "evaluate" and "error" not in r:
            lines += [
                "",
                f"Evaluation at 720×1280 ground truth ({r.get('device', '?')}): "
                f"{r['metrics_images_per_s']} images/s for every Table 1 and Table 2 "
                f"row of an image ({r['rows_per_image']} rows), tiny AVS-Net forward "
                f"{r['tiny_avsnet_forward_images_per_s']} images/s (batch {r['batch']})"
                + (f"; XLA_FLAGS {r['xla_flags']}." if r.get("xla_flags") else "."),
            ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: str = os.path.join(HERE, "RESULTS.md")) -> None:
    """Replaces (or appends) the accelerator section of RESULTS.md, keeping every other one."""
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt:] if nxt >= 0 else ""
    else:
        head, tail = old, ""
    with open(path, "w") as f:
        f.write(head.rstrip() + "\n\n" + text + tail)


def main(
    rows_path: str,
    steps: int,
    peak_given: float,
    render_only: bool,
    torch_py: str,
    size: str = "paper",
    timeout: float = 900,
    skip_done: bool = False,
) -> int:
    if not render_only:
        measure(rows_path, steps, torch_py or sys.executable, timeout, size, skip_done)
    with open(rows_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    text = render(latest(rows), peak_given)
    print(text)
    if size == "paper":  # the tiny plan checks the runner; its figures are not results
        write_section(text)
    return 0
