"""The paper's claims, checked on a tables.json (the quickstart's last step; its held-out sets).

Four claims (Table 1 on BV2 and on BV1, the Table 2 scaling order, a relative depth's structure
against a constant) and the paper's ablation, median scaling at least as good as mean-std,
whose lines start with `ABLATION_MARK` (docs/quickstart.md, "The claims").
"""

from __future__ import annotations

import json
import os

CLAIMS_FILE = "claims.json"
ABLATION_MARK = "median scaling at least as good"
NO_IMAGES = "no image to compare on (every sample of a compared row was left out)"
# The quickstart's targets for how much of the room its models learn beyond the scale
# (docs/quickstart.md, "Results"): M_p (Table 1) and the relative depth (Table 2), each scaled
# per image by the ground truth's median, at most this multiple of a constant depth's Abs Rel.
STRUCTURE_TARGETS = {"table1": 0.5, "table2": 0.7}


def _empty(*rows: dict) -> bool:
    """Whether a compared row has no value (a row over no image: the metrics are None)."""
    return any(row.get(k) is None for row in rows for k in ("abs_rel", "a1"))


def claims(tables: dict) -> list[tuple[str, bool]]:
    """The paper's claims as (sentence, holds) from a tables.json dict. A claim whose rows hold
    no image (every sample left out) does not hold, and says so."""
    out = []
    t1 = tables["table1"]
    for ds in ("bv2", "bv1"):
        if ds in t1 and {"rgb", "rgb_echoes"} <= set(t1[ds]):
            e, r = t1[ds]["rgb_echoes"], t1[ds]["rgb"]
            if _empty(e, r):
                out.append((f"Table 1, {ds.upper()} test: {NO_IMAGES}", False))
                continue
            out.append(
                (
                    f"Table 1, {ds.upper()} test: RGB-Echoes beats Only-RGB on Abs Rel "
                    f"({e['abs_rel']:.3f} < {r['abs_rel']:.3f}) and δ1 ({e['a1']:.3f} > "
                    f"{r['a1']:.3f})",
                    e["abs_rel"] < r["abs_rel"] and e["a1"] > r["a1"],
                )
            )
    for ds, models in tables["table2"].items():
        for model, rows in models.items():
            if not {"no", "rgb", "rgb_echoes"} <= set(rows):
                continue
            e, r, n = rows["rgb_echoes"]["median"], rows["rgb"]["median"], rows["no"]["none"]
            if _empty(e, r, n):
                out.append((f"Table 2, {ds.upper()} {model}: {NO_IMAGES}", False))
            else:
                out.append(
                    (
                        f"Table 2, {ds.upper()} {model}: RGB-Echoes scaling beats RGB scaling "
                        f"beats no scaling on Abs Rel ({e['abs_rel']:.3f} < {r['abs_rel']:.3f} < "
                        f"{n['abs_rel']:.3f}) and δ1 ({e['a1']:.3f} > {r['a1']:.3f} > "
                        f"{n['a1']:.3f})",
                        e["abs_rel"] < r["abs_rel"] < n["abs_rel"] and e["a1"] > r["a1"] > n["a1"],
                    )
                )
            if "constant" in rows.get("gt", {}) and not _empty(
                rows["gt"]["median"], rows["gt"]["constant"]
            ):
                # Guards the lines above: with a relative depth worse than no structure, Abs Rel
                # can still favour one scaling for its bias alone (measured: a run whose every
                # other line held had GT-median 0.375 against the constant's 0.350).
                g, c = rows["gt"]["median"], rows["gt"]["constant"]
                out.append(
                    (
                        f"Table 2, {ds.upper()} {model}: its depth structure beats a constant "
                        f"depth, both scaled by the ground-truth median, on Abs Rel "
                        f"({g['abs_rel']:.3f} < {c['abs_rel']:.3f})",
                        g["abs_rel"] < c["abs_rel"],
                    )
                )
            for src in ("rgb_echoes", "rgb"):
                med, ms = rows[src]["median"], rows[src]["mean_std"]
                if _empty(med, ms):
                    continue  # said once above
                out.append(
                    (
                        f"Table 2, {ds.upper()} {model}, {src} scale: median scaling at least as "
                        f"good as mean-std on Abs Rel ({med['abs_rel']:.3f} <= "
                        f"{ms['abs_rel']:.3f}) and δ1 ({med['a1']:.3f} >= {ms['a1']:.3f})",
                        med["abs_rel"] <= ms["abs_rel"] and med["a1"] >= ms["a1"],
                    )
                )
    return out


def structure(tables: dict) -> list[dict]:
    """How much of each room the models learnt beyond its scale, from a tables.json dict.

    For M_p (`table1_oracle`) and for each relative model (`table2`, source "gt"): the Abs Rel
    of the depth scaled per image by the ground truth's median, as a multiple of the Abs Rel of
    a constant depth (that median everywhere). 1 is no structure at all; 0 a perfect one.
    Returns one record per depth: {"table", "dataset", "model", "abs_rel", "constant_abs_rel",
    "multiple", "target", "meets"} ("target": STRUCTURE_TARGETS[table]); rows a tables.json
    lacks (or left empty) give no record.
    """
    out = []

    def add(table, ds, model, scaled, constant):
        a, c = (scaled or {}).get("abs_rel"), (constant or {}).get("abs_rel")
        if a is None or not c:
            return
        target = STRUCTURE_TARGETS[table]
        multiple = a / c
        out.append(
            dict(
                table=table,
                dataset=ds,
                model=model,
                abs_rel=a,
                constant_abs_rel=c,
                multiple=multiple,
                target=target,
                meets=multiple <= target,
            )
        )

    oracle = tables.get("table1_oracle") or {}
    for ds in sorted(oracle, key=lambda d: (d != "bv2", d)):  # BV2 first, as Table 1 reads
        rows = oracle[ds]
        for model in sorted((m for m in rows if m != "constant"), reverse=True):
            add("table1", ds, model, rows[model], rows.get("constant"))
    for ds, models in tables["table2"].items():
        for model, rows in models.items():
            gt = rows.get("gt", {})
            add("table2", ds, model, gt.get("median"), gt.get("constant"))
    return out


def structure_line(record: dict) -> str:
    """One printed line of a `structure` record."""
    name = {"rgb_echoes": "RGB-Echoes M_p", "rgb": "Only-RGB M_p"}.get(
        record["model"], record["model"]
    )
    return (
        f"{'Table 1' if record['table'] == 'table1' else 'Table 2'}, "
        f"{record['dataset'].upper()} {name}: {record['multiple']:.2f}× a constant's Abs Rel "
        f"({record['abs_rel']:.3f} / {record['constant_abs_rel']:.3f}; "
        f"target ≤ {record['target']:.1f}×)"
    )


def write_claims(folder: str, lines: list[tuple[str, bool]], records: list[dict], **extra) -> str:
    """Writes `folder/claims.json`: {"claims": [{"claim", "holds"}], "structure": records,
    **extra} (the quickstart's and each held-out set's); returns its path."""
    path = os.path.join(folder, CLAIMS_FILE)
    payload = {"claims": [{"claim": s, "holds": h} for s, h in lines], "structure": records}
    with open(path, "w") as f:
        json.dump({**payload, **extra}, f, indent=2)
    return path
