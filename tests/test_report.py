"""report.html (issue 35): both tables as tables.md has them, the claims, every figure by a
relative path; written by the evaluation and rewritten with the claims by the quickstart."""

from __future__ import annotations

import json
import urllib.parse
from html.parser import HTMLParser

import numpy as np

from avs_jax import quickstart
from avs_jax.config_files import load_config
from avs_jax.evaluation import evaluate as evaluate_mod
from avs_jax.evaluation.claims import structure, structure_line
from avs_jax.evaluation.report import REPORT_FILE, check_report, write_report
from avs_jax.evaluation.tables import write_tables

NASTY_ID = 'loc <&>"#%/1'  # a sample id that HTML, a URL and a file name each read differently
NASTY_FILE = NASTY_ID.replace("/", "__")


class _Page(HTMLParser):
    """The page's table cells as (text, bold), its claim items as (class, text), its <img> srcs."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[tuple[str, bool]]]] = []
        self.claims: list[tuple[str, str]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None
        self._bold = False
        self._li: tuple[str, list[str]] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._bold = [], False
        elif tag == "b":
            self._bold = True
        elif tag == "li" and a.get("class") in ("holds", "fails"):
            self._li = (a["class"], [])
        elif tag == "img":
            self.images.append(a["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(("".join(self._cell), self._bold))
            self._cell = None
        elif tag == "li" and self._li:
            self.claims.append((self._li[0], "".join(self._li[1])))
            self._li = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._li:
            self._li[1].append(data)


def _markdown_tables(text: str) -> list[list[list[tuple[str, bool]]]]:
    """tables.md's tables as rows of (text, bold) cells, header rows included."""
    out, in_table = [], False
    for line in text.splitlines():
        if line.startswith("|---"):
            continue
        if not line.startswith("| "):
            in_table = False
            continue
        if not in_table:
            out.append([])
            in_table = True
        cells = line[2:-2].split(" | ")
        out[-1].append([(c.strip("*"), c.startswith("**")) for c in cells])
    return out


def _m(abs_rel, a1=0.5, n=3):
    row = {k: 0.25 for k in ("sq_rel", "rmse", "rmse_log", "a2", "a3")}
    return {**row, "abs_rel": abs_rel, "a1": a1, "n_images": n}


def _png(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")  # only its existence is checked


def test_report_shows_how_much_structure_each_depth_has_against_its_target(tmp_path):
    table2 = {"bv1": {"m<1>": {"gt": {"median": _m(0.28, 0.5), "constant": _m(0.35, 0.4)}}}}
    tables_json = {"table1": {}, "table2": table2}
    tables_json["table1_oracle"] = {
        "bv2": {"rgb_echoes": _m(0.2, 0.7), "constant": _m(0.5, 0.3)},
    }
    learnt = structure(tables_json)
    path = write_report(str(tmp_path), {}, table2, structure=learnt)
    page = _Page(open(path, encoding="utf-8").read())
    # Same classes as the claims: 0.2 / 0.5 = 0.40 meets 0.5; 0.28 / 0.35 = 0.80 misses 0.7.
    assert page.claims == [
        ("holds", "[meets] " + structure_line(learnt[0])),
        ("fails", "[short] " + structure_line(learnt[1])),
    ]
    assert "0.40×" in page.claims[0][1] and "m<1>: 0.80×" in page.claims[1][1]
    # Without records the page has no such section.
    text = open(write_report(str(tmp_path), {}, table2), encoding="utf-8").read()
    assert "beyond its scale" not in text


def test_report_shows_the_tables_as_tables_md_the_claims_and_every_figure(tmp_path):
    table1 = {"bv2": {"rgb_echoes": _m(0.3, 0.7), "rgb": _m(0.4, 0.6), "echoes": _m(None, 0.1)}}
    table2 = {
        "bv1": {
            "monodepth2": {
                "no": {"none": _m(0.9, 0.1)},
                "rgb": {"median": _m(0.35, 0.55), "mean_std": _m(0.36, 0.56)},
                "gt": {"median": _m(0.2, 0.9), "constant": _m(0.3, 0.4)},
            }
        }
    }
    write_tables(str(tmp_path), table1, table2)
    for name in (f"depth_bv1_monodepth2_{NASTY_FILE}.png", "gradcam_bv2_a__1.png", "extra.png"):
        _png(tmp_path / "figures" / name)
    claims = [(f"Table 1, sample {NASTY_ID}: <b>not bold</b> & fine", True), ("other", False)]
    path = write_report(str(tmp_path), table1, table2, claims, runs={"rgb": "/runs/<rgb>"})
    text = open(path, encoding="utf-8").read()
    page = _Page(text)

    # The same cells as tables.md: labels, numbers, "–" for a missing one, the same bold ones.
    assert page.tables == _markdown_tables((tmp_path / "tables.md").read_text())
    assert ("0.300", True) in page.tables[0][1] and ("0.400", False) in page.tables[0][2]
    assert page.tables[0][3][2] == ("–", False)
    oracle = [row for row in page.tables[1] if row[2][0] == "GT median (oracle)"]
    assert len(oracle) == 2 and not any(bold for row in oracle for _, bold in row)
    # Claims: escaped text (no tag injected), coloured by verdict.
    assert page.claims == [
        ("holds", f"[holds] Table 1, sample {NASTY_ID}: <b>not bold</b> & fine"),
        ("fails", "[FAILS] other"),
    ]
    assert "<b>not bold</b>" not in text and "/runs/&lt;rgb&gt;" in text
    # Figures by relative, quoted paths; known kinds in their sections, before the others.
    assert [src.split("_")[0] for src in page.images] == [
        "figures/depth",
        "figures/gradcam",
        "figures/extra.png",
    ]
    assert text.index("Depth panels") < text.index("Grad-CAM") < text.index("Other figures")
    assert "<script" not in text and "http" not in text
    assert check_report(str(tmp_path)) == []

    # The check sees a missing and an unshown figure, and a link that leaves the workdir.
    (tmp_path / "figures" / "extra.png").unlink()
    _png(tmp_path / "figures" / "new.png")
    (tmp_path / "tables.md").unlink()
    problems = check_report(str(tmp_path))
    assert len(problems) == 3, problems
    assert "missing file figures/extra.png" in problems[0] and "tables.md" in problems[1]
    assert problems[2].endswith("figure figures/new.png is not shown")
    (tmp_path / REPORT_FILE).write_text('<p><img src="https://x/y.png"><a href="../z">z</a></div>')
    problems = check_report(str(tmp_path))
    assert any("closes ['p']" in p for p in problems)
    assert any("not a relative path" in p for p in problems)
    assert any("outside the workdir" in p for p in problems)


def test_a_nan_cell_is_shown_as_tables_md_shows_it_and_never_bold(tmp_path):
    """write_tables refuses a NaN; the page, handed one anyway, shows it unranked."""
    table1 = {"bv2": {"rgb": _m(float("nan"), 0.2), "rgb_echoes": _m(0.7, 0.1)}}
    page = _Page(open(write_report(str(tmp_path), table1, {}), encoding="utf-8").read())
    rows = page.tables[0]
    assert rows[1][2] == ("nan", False) and rows[2][2] == ("0.700", True)
    assert rows[1][6] == ("0.200", True)
    assert len(page.tables) == 1  # Table 2 is "not evaluated", not an empty table
    assert check_report(str(tmp_path)) == []


def _stub_models_and_data(monkeypatch):
    """evaluate() on one batch of two per dataset, with stand-in models (no checkpoint, no TFDS):
    its tables, depth panels and report are real; the Grad-CAM panels are stand-in files."""
    gt = np.full((2, 8, 12), 3.0, np.float32)
    gt[:, :2] = 5.0
    gt[1, 0, 0] = 0.0  # a sensor hole
    batch = {
        "valid_example": np.ones(2, bool),
        "sample_id": np.array([NASTY_ID, "loc/2"]),
        "depth_full": gt,
        "image": np.linspace(0, 1, 2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3),
        "echo": np.zeros((2, 4, 6, 2), np.float32),
    }
    near = {"rgb_echoes": 3.2, "rgb": 2.5}

    def stage1(variant, run_dir):
        fn = lambda b: np.full((2, 4, 6), near[variant], np.float32)  # noqa: E731
        return evaluate_mod.Predictor(variant, fn, (4, 6)), None, None, None

    def relative(name, run_dir, checkpoint="best"):
        fn = lambda b: np.asarray(gt > 4, np.float32) + 1.0  # noqa: E731
        return evaluate_mod.Predictor(name, fn, (4, 6))

    def gradcam(config, figdir, loaded, stage1, train_focal):
        path = f"{figdir}/gradcam_bv2_{NASTY_FILE}.png"
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
        return [path]

    monkeypatch.setattr(evaluate_mod, "_stage1_predictor", stage1)
    monkeypatch.setattr(evaluate_mod, "_relative_predictor", relative)
    monkeypatch.setattr(evaluate_mod, "_gradcam_figures", gradcam)
    monkeypatch.setattr(evaluate_mod.datasets, "open_dataset", lambda data: None)
    monkeypatch.setattr(evaluate_mod.datasets, "split_size", lambda builder, split: 2)
    monkeypatch.setattr(
        evaluate_mod.input_pipeline, "create_eval_iterator", lambda b, cfg, split: iter([batch])
    )


def test_quickstart_writes_a_report_whose_every_figure_exists(tmp_path, monkeypatch, capsys):
    """The quickstart's stages 4-5 (its real evaluate() and claims) after stand-in stages 1-3:
    evaluate() writes report.html, the quickstart rewrites it with the claims; each time every
    <img src> and <a href> is a file of the workdir and every figure is shown."""
    _stub_models_and_data(monkeypatch)
    monkeypatch.setattr(quickstart, "simulate_root", lambda *a, **k: False)
    monkeypatch.setattr(quickstart, "_train", lambda *a, **k: None)
    monkeypatch.setattr(quickstart, "build_from_root", lambda *a, **k: None)
    monkeypatch.setattr(quickstart.logging, "set_verbosity", lambda level: None)  # test-global
    evaluate = evaluate_mod.evaluate
    seen = []

    def evaluate_then_check(config, workdir):
        out = evaluate(config, workdir)
        seen.append((check_report(workdir), open(f"{workdir}/{REPORT_FILE}").read()))
        return out

    monkeypatch.setattr(evaluate_mod, "evaluate", evaluate_then_check)
    workdir = tmp_path / "qs"
    out = quickstart.run(load_config("quickstart"), str(workdir))

    [(problems, first)] = seen
    assert problems == [] and "Claims" not in first and "Table 2" in first
    assert check_report(str(workdir)) == []
    page = _Page((workdir / REPORT_FILE).read_text(encoding="utf-8"))
    # The claims, then each depth against a constant (the stand-in tables have the relative
    # model's GT rows and Table 1's oracle rows: one record each at least).
    assert len(out["structure"]) >= 2
    assert [(c, t.split("] ", 1)[1]) for c, t in page.claims] == [
        ("holds" if h else "fails", s) for s, h in out["claims"]
    ] + [("holds" if r["meets"] else "fails", structure_line(r)) for r in out["structure"]]
    saved = json.loads((workdir / "claims.json").read_text())
    assert saved["structure"] == out["structure"]
    assert page.tables == _markdown_tables((workdir / "tables.md").read_text())
    # Depth panels of both test samples of BV1 (Table 2's dataset), and the Grad-CAM panel.
    figures = sorted(p.name for p in (workdir / "figures").iterdir())
    assert [f.split("_")[0] for f in figures] == ["depth", "depth", "gradcam"]
    assert page.images == [f"figures/{urllib.parse.quote(f)}" for f in figures]
    assert "claims.json" in (workdir / REPORT_FILE).read_text()
    assert f"open {workdir / REPORT_FILE} in a browser" in capsys.readouterr().out
