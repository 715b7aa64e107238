"""`mode="quickstart"`: the whole paper, end to end, on simulated BatVision (configs/quickstart.py).

Stages, each skipped when its result is already in the workdir (so a second run reuses them and
an interrupted run continues: the training stages resume from their checkpoints):

  1. simulate a BV2-like and a BV1-like BatVision root     workdir/data/{bv2,bv1}_root
  2. build batvision/{bv2, bv1, bv1_triples}                workdir/data/tfds
  3. train AVS-Net (rgb_echoes), Only-RGB (rgb), DepthNet    workdir/{avsnet_rgb_echoes,...}
  4. evaluate: Tables 1 and 2, figures                      workdir/tables.{json,md}, figures/
  5. print the tables and one line per claim of the paper, saying whether it holds
     (workdir/claims.json), and put all of it on one page    workdir/report.html

What is reused must have been made with the same settings: each simulated root's `.complete`
marker and each run's `quickstart_settings.json` record them, and a rerun whose config differs
raises, naming the file and the differing keys, rather than mixing old data or weights into
new tables (delete that folder, or use a new --workdir). Where the data lies and how fast it is
read (`NOT_SETTINGS`) may change between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import ml_collections
from absl import logging

from avs_jax.errors import BadInputError
from avs_jax.evaluation.claims import claims, structure, structure_line, write_claims
from avs_jax.sim_roots import build_from_root, check_settings, sim_settings, simulate_root

SETTINGS_FILE = "quickstart_settings.json"
# Config keys a rerun may change and still reuse or resume a run: where the data is, and how
# fast it is read (grain reads the same elements in the same order, and its iterator state is
# the same, with any number of read threads and with decoded examples cached or not). Worker
# processes are not among them: their iterator state differs.
NOT_SETTINGS = {
    "data": ("data_dir", "num_threads", "prefetch_buffer_size", "cache_decoded"),
    # stop_at_step pauses a run that resumes exactly; log_every only reports.
    "train": ("prefetch_to_device", "progress_bar", "stop_at_step", "log_every"),
}


def _saved_steps(workdir: str) -> list[int]:
    """Steps of the checkpoints saved in a run's workdir."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    return [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []


def _finished(workdir: str, num_steps: int | None) -> bool:
    steps = _saved_steps(workdir)
    return num_steps is not None and bool(steps) and max(steps) >= num_steps


def _weights_setting(init_from: str) -> str:
    """`config.init_from` as a setting: each `.npz` file by its content ("sha256:..."), so that
    the shipped weights of a clone moved to another folder are the same setting and a changed
    file is not; checkpoint folders (and missing files) by their path."""
    items = []
    for item in (p.strip() for p in init_from.split(",") if p.strip()):
        path, sep, target = item.partition(":")
        if path.endswith(".npz") and os.path.isfile(path):
            with open(path, "rb") as f:
                path = "sha256:" + hashlib.sha256(f.read()).hexdigest()
        items.append(path + sep + target)
    return ",".join(items)


def _run_settings(run_cfg: dict) -> dict:
    """A run's config dict without NOT_SETTINGS, its init_from weights by content."""
    out = dict(run_cfg)
    for section, keys in NOT_SETTINGS.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    if isinstance(out.get("init_from"), str):
        out["init_from"] = _weights_setting(out["init_from"])
    return out


def _train(config: ml_collections.ConfigDict, workdir: str, data_settings: dict) -> None:
    """Trains into `workdir`, or reuses it when finished (resumes it when interrupted) after
    checking it was started with this config and this data."""
    from avs_jax.data import datasets
    from avs_jax.train.loop import train_length
    from avs_jax.train.run import train

    run_cfg = _run_settings(config.to_dict())
    os.makedirs(workdir, exist_ok=True)
    settings_file = os.path.join(workdir, SETTINGS_FILE)
    if _saved_steps(workdir) == [] and os.path.exists(settings_file):
        os.remove(settings_file)  # no checkpoint to protect: a failed start is redone as it is now
    check_settings(
        settings_file,
        {"config": run_cfg, "data": data_settings},
        lambda recorded: dict(recorded, config=_run_settings(recorded.get("config", {}))),
    )

    builder = datasets.open_dataset(config.data)
    spe = datasets.split_size(builder, "train") // config.data.batch_size
    num_steps, _ = train_length(config.train, spe)
    if _finished(workdir, num_steps):
        logging.info("%s is trained (step %d): reusing it", workdir, num_steps)
        return
    out = train(config, workdir)
    if not _finished(workdir, num_steps):
        # Evaluating a half-trained model would print tables and claims that are not the run's.
        raise BadInputError(
            f"{workdir} stopped at step {out['step']} of {num_steps} ({out['stopped']}); run the "
            "same command again without --config.*.train.stop_at_step to finish it"
        )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every stage into `workdir`; returns {"tables", "claims", "structure", "seconds"}."""
    t0 = time.time()
    # The stages print their own progress; orbax's per-save INFO lines would drown it.
    logging.set_verbosity(logging.WARNING)
    workdir = os.path.abspath(workdir)
    data = os.path.join(workdir, "data")
    tfds_dir = os.path.join(data, "tfds")
    roots = {"bv2": os.path.join(data, "bv2_root"), "bv1": os.path.join(data, "bv1_root")}
    print("[1/5] simulating BatVision-layout rooms", flush=True)
    fresh = {
        "bv2": simulate_root(config, roots["bv2"], "bv2", config.seed),
        "bv1": simulate_root(config, roots["bv1"], "bv1", config.seed + 1),
    }
    print("[2/5] building the TFDS datasets", flush=True)
    for name, layout in (("bv2", "bv2"), ("bv1", "bv1"), ("bv1_triples", "bv1")):
        # A root simulated anew replaces what was built from an earlier one.
        build_from_root(name, roots[layout], tfds_dir, fresh[layout])
    sims = {
        "bv2": sim_settings(config, "bv2", config.seed),
        "bv1": sim_settings(config, "bv1", config.seed + 1),
    }

    print("[3/5] training", flush=True)
    runs = {}
    for name, variant in (("avsnet_rgb_echoes", "rgb_echoes"), ("avsnet_rgb", "rgb")):
        cfg = ml_collections.ConfigDict(config.stage1.to_dict())
        cfg.model.variant = variant
        cfg.data.data_dir = tfds_dir
        cfg.train.seed = config.seed
        runs[variant] = os.path.join(workdir, name)
        print(f"      AVS-Net stage 1, {variant}", flush=True)
        _train(cfg, runs[variant], sims["bv2"])
    rel = ml_collections.ConfigDict(config.relative.to_dict())
    rel.data.data_dir = tfds_dir
    rel.train.seed = config.seed
    runs["relative"] = os.path.join(workdir, "depthnet")
    print("      relative DepthNet + PoseNet", flush=True)
    _train(rel, runs["relative"], sims["bv1"])

    print("[4/5] evaluating", flush=True)
    from avs_jax.evaluation.evaluate import evaluate

    ev = ml_collections.ConfigDict(config.evaluate.to_dict())
    ev.data_dir = tfds_dir
    for ds in ev.datasets.values():
        ds.data_dir = tfds_dir
    ev.stage1.rgb_echoes = runs["rgb_echoes"]
    ev.stage1.rgb = runs["rgb"]
    ev.relative.monodepth2 = runs["relative"]
    evaluate(ev, workdir)

    print("[5/5] results", flush=True)
    with open(os.path.join(workdir, "tables.json")) as f:
        tables = json.load(f)
    with open(os.path.join(workdir, "tables.md")) as f:
        print(f.read())
    results = claims(tables)
    for sentence, holds in results:
        print(f"  [{'holds' if holds else 'FAILS'}] {sentence}")
    # The figures show it too; here as numbers: each depth scaled per image by the ground
    # truth's median against a constant depth (docs/quickstart.md, "Results").
    learnt = structure(tables)
    print("How much of the room the models learnt beyond its scale (1×: none):")
    for record in learnt:
        print(f"  [{'meets' if record['meets'] else 'short'}] {structure_line(record)}")
    seconds = time.time() - t0
    write_claims(workdir, results, learnt, seconds=seconds)
    # evaluate() wrote the page without the claims, which only the quickstart computes.
    from avs_jax.evaluation.report import write_report

    evaluated = {**ev.stage1.to_dict(), **ev.relative.to_dict()}
    page = write_report(
        workdir,
        tables["table1"],
        tables["table2"],
        claims=results,
        runs={name: path for name, path in evaluated.items() if path},
        oracle=tables.get("table1_oracle"),
        structure=learnt,
        train_focal=tables.get("canonical_camera", {}).get("train_focal"),
    )
    print(f"quickstart finished in {seconds / 60:.1f} min; results in {workdir}", flush=True)
    print(f"open {page} in a browser to read them", flush=True)
    out = {"tables": tables, "claims": results, "structure": learnt, "seconds": seconds}
    if config.get("heldout") is not None and config.heldout.enabled:
        from avs_jax import heldout

        out["heldout"] = heldout.run(config, workdir, runs)
    return out
