"""`report.html`: an evaluation's tables, claims and figures on one page, read in a browser.

The page is plain HTML with a short inline style: no script, no external CSS or font, and the
figures linked by paths relative to the workdir (`figures/<name>.png`), so the workdir can be
moved or copied as a whole and the page still shows everything. Its tables are the cells of
`tables.md` (`avs_jax/evaluation/tables.py`): the same numbers, labels and bold best values.

`check_report(workdir)` parses a written page and lists what is wrong with it: a link to a file
that is not there, a figure under `figures/` the page does not show, or unbalanced tags.
"""

from __future__ import annotations

import html
import os
import time
import urllib.parse
from html.parser import HTMLParser
from typing import Any, Sequence

from avs_jax.evaluation import tables
from avs_jax.evaluation.claims import structure_line

REPORT_FILE = "report.html"
FIGURE_DIR = "figures"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".svg", ".gif")
# Files of the workdir the page links to when they are there (claims.json: the quickstart's).
LINKED_FILES = ("tables.md", "tables.json", "claims.json", "export/scales.csv")
# Figure file-name prefix -> section title and what every figure of the section shows.
FIGURE_KINDS = {
    "depth_": (
        "Depth panels (Fig. 5)",
        "RGB, ground truth, the relative model unscaled and scaled by each stage-1 model's M_p "
        "(median scaling), and the absolute errors of the scaled depths.",
    ),
    "gradcam_": (
        "Grad-CAM (Fig. 6)",
        "Inputs and the depth of both stage-1 models; below, the attention on the STFT (its "
        "top axis in metres, 343 t / 2) and on the RGB input of each model.",
    ),
}
OTHER_FIGURES = ("Other figures", "")

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 100em; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
li.holds .verdict { color: #11772b; font-weight: bold; }
li.fails .verdict { color: #b3141e; font-weight: bold; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #444; }
"""


def _figure_files(workdir: str) -> list[str]:
    """Every image under `workdir/figures`, as sorted paths relative to `workdir`."""
    out = []
    for root, _, files in os.walk(os.path.join(workdir, FIGURE_DIR)):
        for name in files:
            if name.lower().endswith(IMAGE_EXTS):
                out.append(os.path.relpath(os.path.join(root, name), workdir))
    return sorted(out)


def _url(rel_path: str) -> str:
    """A workdir-relative path as an href/src: `/`-separated, each name percent-quoted (a sample
    id may hold spaces, `#`, `%` or `&`)."""
    return urllib.parse.quote(rel_path.replace(os.sep, "/"))


def _table_html(title: str, labels: tuple[str, ...], rows: list[list[tables.Cell]]) -> str:
    number, caption = title.split(". ", 1)
    out = [f"<h2>{html.escape(number)}</h2>", f"<p>{html.escape(caption)}</p>"]
    if not rows:
        return "\n".join(out + ["<p><em>Not evaluated in this run.</em></p>"])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in tables.header(labels))
    out += ["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for row in rows:
        cells = []
        for i, (text, bold) in enumerate(row):
            shown = f"<b>{html.escape(text)}</b>" if bold else html.escape(text)
            cls = "" if i < len(labels) else ' class="num"'  # labels left, numbers right
            cells.append(f"<td{cls}>{shown}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</tbody>", "</table>"])


def _figures_html(rel_paths: Sequence[str]) -> str:
    if not rel_paths:
        return "<h2>Figures</h2>\n<p><em>No figures in this run.</em></p>"
    groups: dict[tuple[str, str], list[str]] = {}
    for rel in rel_paths:
        name = os.path.basename(rel)
        kind = next((k for k in FIGURE_KINDS if name.startswith(k)), None)
        groups.setdefault(FIGURE_KINDS.get(kind, OTHER_FIGURES), []).append(rel)
    out = ["<h2>Figures</h2>"]
    for title, about in sorted(groups, key=lambda g: g == OTHER_FIGURES):  # known kinds first
        out.append(f"<h3>{html.escape(title)}</h3>")
        if about:
            out.append(f"<p>{html.escape(about)}</p>")
        for rel in groups[(title, about)]:
            src = html.escape(_url(rel))
            caption = html.escape(os.path.splitext(os.path.basename(rel))[0])
            out.append(
                f'<figure><a href="{src}"><img src="{src}" alt="{caption}"></a>'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    return "\n".join(out)


def _verdicts(lines: Sequence[tuple[str, bool, str]]) -> str:
    """A list of (text, good, verdict word) lines, each coloured by whether it is good."""
    items = [
        f'<li class="{"holds" if good else "fails"}"><span class="verdict">[{verdict}]</span> '
        f"{html.escape(text)}</li>"
        for text, good, verdict in lines
    ]
    return "<ul>" + "\n".join(items) + "</ul>"


def write_report(
    workdir: str,
    table1: dict[str, Any],
    table2: dict[str, Any],
    claims: Sequence[tuple[str, bool]] | None = None,
    figures: Sequence[str] | None = None,
    runs: dict[str, str] | None = None,
    oracle: dict[str, Any] | None = None,
    structure: Sequence[dict] | None = None,
    train_focal: dict[str, float] | None = None,
) -> str:
    """Writes `workdir/report.html` (replacing it whole); returns its path.

    Args:
      table1, table2: as `tables.write_tables` takes them (or as `tables.json` holds them).
      oracle: Table 1's references, as `tables.json`'s "table1_oracle" (None: none shown).
      claims: (sentence, holds) lines, as `avs_jax.evaluation.claims.claims` gives them; None: no
        claims section.
      structure: records of `avs_jax.evaluation.claims.structure` (each depth against a constant,
        with its target); None: no such section.
      figures: image paths inside `workdir` (absolute or relative to it); None: every image
        under `workdir/figures`.
      runs: name -> where that model came from (a run dir, a predictions folder), listed as the
        run's context.
      train_focal: with the canonical camera on, {variant: training's focal length}, as
        `tables.json`'s "canonical_camera" holds it: said above the tables.
    """
    workdir = os.path.abspath(workdir)
    if figures is None:
        rel_figures = _figure_files(workdir)
    else:
        rel_figures = [os.path.relpath(os.path.join(workdir, f), workdir) for f in figures]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>AVS-Net evaluation: {html.escape(os.path.basename(workdir))}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>AVS-Net evaluation</h1>",
        f"<p>Workdir <code>{html.escape(workdir)}</code>, written "
        f"{html.escape(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}.</p>",
    ]
    if runs:
        items = "".join(
            f"<li>{html.escape(name)}: <code>{html.escape(str(path))}</code></li>"
            for name, path in runs.items()
        )
        parts.append(f"<p>Models evaluated:</p>\n<ul>{items}</ul>")
    links = [f for f in LINKED_FILES if os.path.isfile(os.path.join(workdir, f))]
    if links:
        shown = ", ".join(f'<a href="{html.escape(_url(f))}">{html.escape(f)}</a>' for f in links)
        parts.append(f"<p>Files: {shown}.</p>")
    if claims is not None:
        parts.append("<h2>Claims of the paper</h2>")
        parts.append(_verdicts([(s, ok, "holds" if ok else "FAILS") for s, ok in claims]))
    if structure:
        parts.append("<h2>How much of the room the models learnt beyond its scale</h2>")
        parts.append(
            "<p>Each depth scaled per image by the ground truth's median; its Abs Rel as a "
            "multiple of a constant depth's (1×: no structure).</p>"
        )
        lines = [
            (structure_line(r), r["meets"], "meets" if r["meets"] else "short") for r in structure
        ]
        parts.append(_verdicts(lines))
    if train_focal:
        parts.append(f"<p>{html.escape(tables.camera_note(train_focal))}</p>")
    parts.append(
        _table_html(tables.TABLE1_TITLE, tables.TABLE1_LABELS, tables.table1_rows(table1, oracle))
    )
    parts.append(_table_html(tables.TABLE2_TITLE, tables.TABLE2_LABELS, tables.table2_rows(table2)))
    parts += [_figures_html(rel_figures), "</body>", "</html>", ""]
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, REPORT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    os.replace(tmp, path)  # a browser open on the old page never reads half a new one
    return path


VOID_TAGS = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class _Links(HTMLParser):
    """Collects every `<img src>` and `<a href>`, and tags that do not nest."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images: list[str] = []
        self.links: list[str] = []
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "a" and "href" in a:
            self.links.append(a["href"] or "")
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"line {self.getpos()[0]}: </{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def check_report(workdir: str) -> list[str]:
    """What is wrong with `workdir/report.html` (an empty list: nothing).

    Every `<img src>` and `<a href>` must be a relative path to a file inside `workdir` (no URL,
    no absolute path: the page is read from the workdir alone), every image under
    `workdir/figures` must be shown, and the tags must nest.
    """
    workdir = os.path.abspath(workdir)
    path = os.path.join(workdir, REPORT_FILE)
    if not os.path.isfile(path):
        return [f"{path}: no such file"]
    parser = _Links()
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    parser.close()
    problems = [f"{path}: {p}" for p in parser.problems]
    if parser.stack:
        problems.append(f"{path}: unclosed tags {parser.stack}")
    shown = set()
    for ref in dict.fromkeys(parser.images + parser.links):  # each once (a figure is both)
        parsed = urllib.parse.urlsplit(ref)
        if parsed.scheme or parsed.netloc or ref.startswith("/") or not parsed.path:
            problems.append(f"{path}: {ref!r} is not a relative path to a file of the workdir")
            continue
        rel = os.path.normpath(urllib.parse.unquote(parsed.path))
        if rel.startswith(".."):
            problems.append(f"{path}: {ref!r} points outside the workdir")
        elif not os.path.isfile(os.path.join(workdir, rel)):
            problems.append(f"{path}: {ref!r} links to a missing file {rel}")
        elif ref in parser.images:
            shown.add(rel)
    for rel in _figure_files(workdir):
        if os.path.normpath(rel) not in shown:
            problems.append(f"{path}: figure {rel} is not shown")
    return problems
