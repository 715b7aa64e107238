"""Held-out rooms: a quickstart's models on freshly simulated test rooms they never saw.

  python -m avs_jax.main --config=configs/quickstart.py --workdir=runs/quickstart \
      --config.heldout.enabled=True

After the quickstart (reused when done), for each set of `config.heldout.sets`: simulate BV2-
and BV1-like rooms with the set's own seed and settings, test split only
(workdir/heldout/<set>/{bv2,bv1}_root), build `bv2` and `bv1`, evaluate the quickstart's three
models there (Tables 1 and 2) and check the quickstart's claims. Sets change what training never
showed: other seeds with the training ranges, rooms smaller or larger than any trained on, more
obstacles, windows, more reflections (a more reverberant echo).

Writes workdir/heldout/<set>/{tables.json, tables.md, claims.json} and workdir/heldout.md: a
row per set with its Table 1 and Table 2 numbers and which claims hold. Every set is reused
when its files are there (settings checked as the quickstart checks its own).
"""

from __future__ import annotations

import json
import os

import ml_collections

from avs_jax.evaluation.claims import ABLATION_MARK, claims, structure, write_claims
from avs_jax.evaluation.tables import DATASET_NAMES
from avs_jax.sim_roots import build_from_root, simulate_root

SUMMARY_FILE = "heldout.md"


def set_sim_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """{"workers", "bv2", "bv1"}: the quickstart's simulation settings with set ``name``'s
    changes, its room count and a test split only (as `sim_roots.simulate_root` reads them)."""
    held = config.heldout
    changes = held.sets[name]
    sim = ml_collections.ConfigDict({"workers": config.sim.workers})
    for layout in ("bv2", "bv1"):
        s = ml_collections.ConfigDict(config.sim[layout].to_dict())
        if layout in changes:
            s.update(changes[layout].to_dict())
        s.scenes = int(held.scenes[layout])
        s.split_fractions = (0, 0, 1)  # every room is a test room
        sim[layout] = s
    return ml_collections.ConfigDict({"sim": sim})


def evaluate_set(
    config: ml_collections.ConfigDict, workdir: str, name: str, runs: dict[str, str]
) -> dict:
    """Simulates, builds and evaluates held-out set ``name``; returns its tables.json dict with
    "claims": [(sentence, holds)]. runs: {"rgb_echoes", "rgb", "relative"} -> run dirs."""
    from avs_jax.evaluation.evaluate import evaluate

    out = os.path.join(workdir, "heldout", name)
    tfds_dir = os.path.join(out, "tfds")
    sim = set_sim_config(config, name)
    seed = int(config.heldout.sets[name].seed)
    for layout, layout_seed in (("bv2", seed), ("bv1", seed + 1)):
        root = os.path.join(out, f"{layout}_root")
        fresh = simulate_root(sim, root, layout, layout_seed)
        build_from_root(layout, root, tfds_dir, fresh)
    ev = ml_collections.ConfigDict(config.evaluate.to_dict())
    ev.data_dir = tfds_dir
    for ds in ev.datasets.values():
        ds.data_dir = tfds_dir
    ev.figures.num_per_dataset = int(config.heldout.figures_per_dataset)
    ev.gradcam.num_samples = 0
    ev.stage1.rgb_echoes, ev.stage1.rgb = runs["rgb_echoes"], runs["rgb"]
    ev.relative.monodepth2 = runs["relative"]
    evaluate(ev, out)
    with open(os.path.join(out, "tables.json")) as f:
        tables = json.load(f)
    lines = claims(tables)
    write_claims(out, lines, structure(tables))
    return {**tables, "claims": lines}


def summary_markdown(results: dict[str, dict], sets: ml_collections.ConfigDict) -> str:
    """heldout.md: a row per set (its changes; Table 1 Abs Rel of RGB-Echoes / Only-RGB per
    dataset; Table 2 RGB-Echoes / RGB / no scaling and GT median / constant; the four claims
    held and the ablation's lines held)."""
    head = (
        "| set | changes | T1 BV2 RGB-Echoes / Only-RGB | T1 BV1 RGB-Echoes / Only-RGB | "
        "T2 RGB-Echoes / RGB / no scaling | T2 GT median / constant | claims | ablation |"
    )
    camera = any("canonical_camera" in r for r in results.values())
    lines = [
        "Held-out simulated rooms: the quickstart's models on test rooms of other seeds and "
        "settings (avs_jax/heldout.py). Abs Rel."
        + (
            " Canonical camera: M_p × the test camera's focal length / training's."
            if camera
            else ""
        ),
        "",
        head,
        "|---" * 8 + "|",
    ]
    for name, r in results.items():
        t1, cells = r["table1"], []
        for ds in ("bv2", "bv1"):
            rows = t1.get(ds, {})
            cells.append(" / ".join(_abs(rows.get(v)) for v in ("rgb_echoes", "rgb")))
        t2 = next(iter(next(iter(r["table2"].values()), {}).values()), {})
        cells.append(
            " / ".join(
                _abs(t2.get(s, {}).get(m))
                for s, m in (("rgb_echoes", "median"), ("rgb", "median"), ("no", "none"))
            )
        )
        gt = t2.get("gt", {})
        cells.append(f"{_abs(gt.get('median'))} / {_abs(gt.get('constant'))}")
        main = [h for s, h in r["claims"] if ABLATION_MARK not in s]
        ablation = [h for s, h in r["claims"] if ABLATION_MARK in s]
        changes = _changes(sets[name])
        lines.append(
            f"| {name} | {changes} | "
            + " | ".join(cells)
            + f" | {sum(main)} of {len(main)} | {sum(ablation)} of {len(ablation)} |"
        )
    return "\n".join(lines) + "\n"


def _abs(m: dict | None) -> str:
    return "–" if not m or m.get("abs_rel") is None else f"{m['abs_rel']:.3f}"


def _changes(s: ml_collections.ConfigDict) -> str:
    parts = [
        f"{DATASET_NAMES.get(layout, layout)} {k}={v}"
        for layout in ("bv2", "bv1")
        if layout in s
        for k, v in s[layout].items()
    ]
    return f"seed {s.seed}" + ("; " + ", ".join(parts) if parts else "")


def run(config: ml_collections.ConfigDict, workdir: str, runs: dict[str, str]) -> dict:
    """Every set of `config.heldout.sets`; writes heldout.md and returns {set: results}."""
    results = {}
    names = list(config.heldout.sets)
    for i, name in enumerate(names, 1):
        print(f"[held-out {i}/{len(names)}] {name}", flush=True)
        results[name] = evaluate_set(config, workdir, name, runs)
        for sentence, holds in results[name]["claims"]:
            print(f"  [{'holds' if holds else 'FAILS'}] {sentence}")
    text = summary_markdown(results, config.heldout.sets)
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
        f.write(text)
    print(text, flush=True)
    return results
