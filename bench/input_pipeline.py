"""Input-pipeline benchmark: build time and samples/s of the stage-1 and triples training pipelines.

  python bench/input_pipeline.py [--manual_dir=BV2_DIR] [--manual_dir_bv1=DIR] [--n=64]

Without manual dirs, writes BatVision-layout folders with the fixture writer of tests/ whose
files are copies of the real BV2 sample (1280x720 JPEG of 123 kB, 20000-frame int32 WAV,
720x1280 uint16 depth), so decode costs are those of real data. Prints a Markdown table and
writes it under "## Input pipeline" in bench/RESULTS.md (other sections kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from absl import logging  # pylint: disable=g-import-not-at-top

from avs_jax.data import input_pipeline as ip
from avs_jax.data.config import default_data_config
from tests import batvision_fixture as fx
from tfds_batvision.build import build_dataset

SAMPLE = REPO.parent / "shared" / "data" / "batvision_v2_sample" / "unknown_location"
# docs/performance.md, measured here: a ResNet-18 train step at 192x640, batch 12 takes 2075 ms in JAX
# on this CPU, i.e. 5.8 samples/s: the training steps of both stages (bigger networks) are slower.
TRAIN_STEP_SAMPLES_PER_S = 12 / 2.075


def real_like_bv2(root: Path, n: int, sample: Path = SAMPLE) -> Path:
    """A BV2 root of `n` training samples, each a copy of the real sample's files (in `sample`,
    a BV2 location folder): the decode costs of real data."""
    _check_sample(sample)
    fx.write_bv2(root, {"LocA": {"train": n}}, hw=(8, 8), frames=64)
    for i in range(n):
        shutil.copy(sample / "camera/camera_47.jpeg", root / f"LocA/camera/camera_{i}.jpeg")
        shutil.copy(sample / "audio/audio_47.wav", root / f"LocA/audio/audio_{i}.wav")
        shutil.copy(sample / "depth/depth_47.npy", root / f"LocA/depth/depth_{i}.npy")
    return root


def real_like_bv1(root: Path, n: int, sample: Path = SAMPLE) -> Path:
    """A BV1 root of one session of `n` frames 0.1 s apart (n - 40 triples), each frame a copy of
    the real BV2 sample's 1280x720 JPEG."""
    _check_sample(sample)
    times = [36000 + 0.1 * i for i in range(n)]
    fx.write_bv1(root, {"2019.08.26": times}, hw=(8, 8), samples=16)
    for t in times:
        shutil.copy(
            sample / "camera/camera_47.jpeg",
            root / "2019.08.26/camera/left" / f"{fx.bv1_stem(t)}.jpeg",
        )
    return root


def _check_sample(sample: Path) -> None:
    if not (sample / "camera/camera_47.jpeg").is_file():
        raise FileNotFoundError(
            f"no real BV2 sample in {sample} (camera/camera_47.jpeg, audio/audio_47.wav, "
            "depth/depth_47.npy): copy ../shared/data/batvision_v2_sample/unknown_location there"
        )


def _throughput(builder, cfg, n_batches: int) -> tuple[float, float | None]:
    """(samples/s wall clock, CPU ms per sample of this process or None with worker processes)."""
    it = ip.create_train_iterator(builder, cfg, process_index=0, process_count=1)
    # Start-up (workers, the first parallel burst of the read threads, which finish several
    # batches at once) is not steady state: drain it before timing.
    for _ in range(max(cfg.get("num_threads", 1), cfg.num_workers) + 1):
        next(it)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_batches):
        next(it)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if hasattr(it, "close"):
        it.close()
    n = n_batches * cfg.batch_size
    # With workers the work is in child processes, so this process's CPU time says nothing.
    return n / dt, (1000 * dc / n if cfg.num_workers == 0 else None)


def host_ms_per_example(builder, cfg, n_batches: int = 8) -> float:
    """CPU ms per training example (a BV2 sample, a BV1 triple) of one input process: the
    training pipeline of `cfg` (decode, STFT, resizes, augmentation, batching, with its read
    threads) run without worker processes, over `n_batches` batches after its start-up. Counts
    CPU time, not wall time, so other load on the machine does not change it."""
    cfg = cfg.copy_and_resolve_references()
    cfg.num_workers = 0
    return _throughput(builder, cfg, n_batches)[1]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--manual_dir_bv2",
        "--manual_dir",
        default=None,
        help="BV2 root (e.g. a simulator output) instead of copies of the real sample",
    )
    p.add_argument("--manual_dir_bv1", default=None, help="BV1 root for the triples pipeline")
    p.add_argument("--n", type=int, default=64, help="samples/frames per generated root")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = p.parse_args()
    logging.set_verbosity(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_input_"))
    rows = []
    try:
        bv2_root = (
            Path(args.manual_dir_bv2) if args.manual_dir_bv2 else real_like_bv2(tmp / "bv2", args.n)
        )
        bv1_root = (
            Path(args.manual_dir_bv1) if args.manual_dir_bv1 else real_like_bv1(tmp / "bv1", args.n)
        )
        for name, root in (("bv2", bv2_root), ("bv1_triples", bv1_root)):
            t0 = time.perf_counter()
            builder = build_dataset(name, root, tmp / "data", overwrite=True)
            build_s = time.perf_counter() - t0
            n_ex = builder.info.splits["train"].num_examples
            for workers in args.workers:
                cfg = default_data_config(name)
                cfg.num_workers = workers
                cfg.num_threads = 2
                sps, cpu_ms = _throughput(builder, cfg, args.batches)
                rows.append(
                    (
                        name,
                        "x".join(map(str, cfg.image_size)),
                        cfg.batch_size,
                        workers,
                        f"{sps:.1f}",
                        "-" if cpu_ms is None else f"{cpu_ms:.0f}",
                        f"{sps / TRAIN_STEP_SAMPLES_PER_S:.1f}x",
                        f"{n_ex} in {build_s:.1f} s ({n_ex / build_s:.1f}/s)",
                    )
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = (
        "| pipeline | H x W | batch | workers | samples/s | CPU ms/sample | "
        "vs 5.8 samples/s step | build (examples) |\n|---|---|---|---|---|---|---|---|\n"
    )
    table = head + "".join("| " + " | ".join(map(str, r)) + " |\n" for r in rows)
    print(table)
    section = (
        "## Input pipeline\n\n"
        f"`python bench/input_pipeline.py` on {platform.machine()} with {os.cpu_count()} CPU cores "
        f"({time.strftime('%Y-%m-%d')}); data: copies of the real BV2 sample (1280x720 JPEG, "
        "int32 WAV, uint16 depth) in BV2 and BV1 layouts. samples/s counts examples (triples for "
        "bv1_triples) after decode, STFT, resize, augmentation and batching; the step reference "
        "is the ResNet-18 192x640 train step of docs/performance.md (2075 ms per 12), a lower bound on "
        "the real steps. CPU ms/sample (no worker processes) is the CPU time this process spent per "
        "sample, a figure that does not depend on other load: 1000 / it is the samples/s one free "
        "core gives. Other jobs shared the 2 cores during the run (load average "
        f"{os.getloadavg()[0]:.1f}), so the wall-clock samples/s are lower bounds.\n\n" + table
    )
    write_section(Path(args.results), section)


def write_section(path: Path, section: str) -> None:
    """Replaces (or appends) the section of a Markdown file whose '## ' heading is the first line
    of `section`; the other sections are kept."""
    heading = section.splitlines()[0].strip()
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        new = (
            "".join(lines[:start])
            + section
            + ("\n" if end < len(lines) else "")
            + "".join(lines[end:])
        )
    path.write_text(new)


if __name__ == "__main__":
    main()
