"""Table 1 and Table 2 of the paper as JSON and Markdown (and, as the same cells, in report.html).

JSON layout (a stable interface for scripts):

    {"table1": {DATASET: {VARIANT: METRICS}},
     "table1_oracle": {DATASET: {VARIANT: METRICS, "constant": METRICS}},
     "table2": {DATASET: {MODEL: {SOURCE: {METHOD: METRICS}}}}}

METRICS has the keys `abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3, n_images`. In Table 2,
SOURCE is the scale source ("no", "rgb", "rgb_echoes", or "gt" for the oracle rows) and METHOD
is "median" or "mean_std" ("none" for the unscaled row). Under "gt", "median" is the relative
model scaled by the ground truth's median and "constant" each image's ground-truth median
everywhere (no depth structure at all): the two references a relative model is judged by.
"table1_oracle" holds the same two references for M_p: each variant's M_p scaled per image by
the ground truth's median (its structure alone, its scale taken away) and the constant depth.

A metric is a finite number, or null/"–" when no image could be averaged (`n_images` 0); a
missing value is never ranked nor bold. NaN or inf is refused: `write_tables` raises a
ValueError naming the row (the evaluation raises on its inputs first, so this is a last guard).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from avs_jax.metrics import LOWER_IS_BETTER, METRIC_NAMES

JSON_KEYS = METRIC_NAMES + ("n_images",)
COLUMNS = ("Abs Rel ↓", "Sq Rel ↓", "RMSE ↓", "RMSE log ↓", "δ<1.25 ↑", "δ<1.25² ↑", "δ<1.25³ ↑")
VARIANT_NAMES = {
    "rgb": "AVS-Net (Only-RGB)",
    "rgb_echoes": "AVS-Net (RGB-Echoes)",
    "echoes": "Echoes only",
}
SOURCE_NAMES = {"no": "No", "rgb": "RGB", "rgb_echoes": "RGB-Echoes", "gt": "GT median (oracle)"}
METHOD_NAMES = {"none": "–", "constant": "constant depth"}
DATASET_NAMES = {"bv2": "BV2", "bv1": "BV1"}
ORACLE_NAMES = {"scaled": "{}, scaled by GT median (oracle)", "constant": "constant depth (oracle)"}


def clean_metrics(m: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Only the JSON keys, as plain floats / ints; ValueError (naming `where`) on NaN or inf."""
    out = {k: (None if m.get(k) is None else float(m[k])) for k in METRIC_NAMES}
    for k, v in out.items():
        if v is not None and not math.isfinite(v):
            raise ValueError(f"tables: {where or 'a row'}: {k} is {v}; a table holds no NaN/inf")
    out["n_images"] = int(m.get("n_images", 0))
    return out


def _present(v: Any) -> bool:
    """A value to show and rank: not missing (None) and finite."""
    return v is not None and math.isfinite(v)


def _best(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Best value of each metric column among rows (ignoring missing and non-finite values)."""
    best = {}
    for k in METRIC_NAMES:
        vals = [r[k] for r in rows if _present(r.get(k))]
        if vals:
            best[k] = min(vals) if LOWER_IS_BETTER[k] else max(vals)
    return best


Cell = tuple[str, bool]  # the text shown, and whether it is bold (the best of its block)
TABLE1_TITLE = "Table 1. Pseudo-dense metric depth M_p (stage 1, trained on BV2)."
TABLE2_TITLE = "Table 2. Relative depth made metric by scaling (stage 2)."
TABLE1_LABELS = ("Dataset", "Model")
TABLE2_LABELS = ("Dataset", "Model", "Scaling", "Method")


def header(labels: tuple[str, ...]) -> list[str]:
    """A table's column titles: its row labels, the metric columns, the image count."""
    return list(labels) + list(COLUMNS) + ["images"]


def _cells(label: list[str], m: dict[str, Any], best: dict[str, float]) -> list[Cell]:
    cells = [(s, False) for s in label]
    for k in METRIC_NAMES:
        v = m.get(k)
        if not _present(v):
            # Missing; NaN/inf (which write_tables refuses) shown as what it is, never bold.
            cells.append(("–" if v is None else str(v), False))
            continue
        s = f"{v:.3f}"
        cells.append((s, k in best and f"{best[k]:.3f}" == s))
    return cells + [(str(m.get("n_images", 0)), False)]


def table1_rows(
    table1: dict[str, dict[str, dict[str, Any]]], oracle: dict[str, dict] | None = None
) -> list[list[Cell]]:
    """Table 1's rows (columns as `header(TABLE1_LABELS)`), the best of each dataset bold; after
    each dataset's models, its `oracle` references (never bold: they use the ground truth)."""
    rows = []
    for ds, variants in table1.items():
        best = _best(list(variants.values()))
        name = DATASET_NAMES.get(ds, ds)
        for v, m in variants.items():
            rows.append(_cells([name, VARIANT_NAMES.get(v, v)], m, best))
        refs = (oracle or {}).get(ds, {})
        order = list(variants)  # each model's reference in the models' order, the constant last
        for v in sorted(refs, key=lambda k: (k == "constant", order.index(k) if k in order else 0)):
            label = (
                ORACLE_NAMES["constant"]
                if v == "constant"
                else ORACLE_NAMES["scaled"].format(VARIANT_NAMES.get(v, v))
            )
            rows.append(_cells([name, label], refs[v], {}))
    return rows


def table2_rows(table2: dict[str, Any]) -> list[list[Cell]]:
    """Table 2's rows (columns as `header(TABLE2_LABELS)`), the best of each model's block bold."""
    out = []
    for ds, models in table2.items():
        for model, sources in models.items():
            rows = [(s, meth, m) for s, methods in sources.items() for meth, m in methods.items()]
            # The oracle row uses the ground truth: it is not a competitor for "best".
            best = _best([m for s, _, m in rows if s != "gt"])
            for s, meth, m in rows:
                label = [
                    DATASET_NAMES.get(ds, ds),
                    model,
                    SOURCE_NAMES.get(s, s),
                    METHOD_NAMES.get(meth, meth),
                ]
                out.append(_cells(label, m, best if s != "gt" else {}))
    return out


def _markdown(title: str, labels: tuple[str, ...], rows: list[list[Cell]]) -> str:
    number, caption = title.split(". ", 1)
    cols = header(labels)
    lines = [
        f"**{number}.** {caption}",
        "",
        "| " + " | ".join(cols) + " |",
        "|---" * len(cols) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(f"**{t}**" if bold else t for t, bold in row) + " |")
    return "\n".join(lines) + "\n"


def table1_markdown(
    table1: dict[str, dict[str, dict[str, Any]]], oracle: dict[str, dict] | None = None
) -> str:
    """Table 1: pseudo-dense metric depth M_p of each stage-1 variant, best per dataset bold,
    and the `oracle` references."""
    return _markdown(TABLE1_TITLE, TABLE1_LABELS, table1_rows(table1, oracle))


def table2_markdown(table2: dict[str, Any]) -> str:
    """Table 2: relative models × scale source × method; best of each model's block bold."""
    return _markdown(TABLE2_TITLE, TABLE2_LABELS, table2_rows(table2))


def camera_note(train_focal: dict[str, float]) -> str:
    """The sentence above the tables when the canonical camera scaled M_p."""
    trained = ", ".join(f"{VARIANT_NAMES.get(v, v)} {f:.4f}" for v, f in train_focal.items())
    return (
        "Canonical camera: M_p × the test camera's focal length / training's "
        f"(training's, as a fraction of the image: {trained})."
    )


def write_tables(
    workdir: str,
    table1: dict,
    table2: dict,
    table1_oracle: dict | None = None,
    train_focal: dict[str, float] | None = None,
) -> tuple[str, str]:
    """Writes `tables.json` and `tables.md` into `workdir`; returns their paths.

    `train_focal` ({variant: focal length}, with the canonical camera on) is recorded as
    "canonical_camera" and said above the tables: every M_p was scaled by f_test / f_train.

    ValueError, before anything is written, if a metric is NaN or inf.
    """
    data = {
        "table1": {
            d: {v: clean_metrics(m, f"table1 {d} {v}") for v, m in vs.items()}
            for d, vs in table1.items()
        },
        "table1_oracle": {
            d: {v: clean_metrics(m, f"table1_oracle {d} {v}") for v, m in vs.items()}
            for d, vs in (table1_oracle or {}).items()
        },
        "table2": {
            d: {
                mo: {
                    s: {me: clean_metrics(m, f"table2 {d} {mo} {s} {me}") for me, m in mes.items()}
                    for s, mes in ss.items()
                }
                for mo, ss in ms.items()
            }
            for d, ms in table2.items()
        },
    }
    note = ""
    if train_focal:
        data["canonical_camera"] = {"train_focal": dict(train_focal)}
        note = camera_note(train_focal) + "\n\n"
    os.makedirs(workdir, exist_ok=True)  # evaluate() called directly, with no figures to draw
    json_path = os.path.join(workdir, "tables.json")
    md_path = os.path.join(workdir, "tables.md")
    tmp = json_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, json_path)
    with open(md_path, "w") as f:
        f.write(
            note
            + table1_markdown(data["table1"], data["table1_oracle"])
            + "\n"
            + table2_markdown(data["table2"])
        )
    return json_path, md_path
