"""BatVision split CSVs: reading them, listing their samples, ordering BV1 frames into triples.

Only the columns that are read are required (docs/reference.md, "Split CSVs"); any other column
may be absent, extra or in another order, since no public source confirms the full headers.

- BV2 (per location): ``audio path``, ``audio file name``, ``camera path``, ``camera file name``,
  ``depth path``, ``depth file name``; a file is ``join(root, row['<kind> path'],
  row['<kind> file name'])``.
- BV1 (at the root): ``depth path``, ``audio path left``, ``audio path right``,
  ``camera path left`` (relative to the root); optional ``index``, ``time``/``timestamp`` and
  ``session``, used when present.

BV1 frame triples (paper Sec. 4.1) do not trust the CSV's row order: rows are sorted by
(session, time) first (docs/reference.md, "Frame triples"), so every row needs a time stamp
there; one that cannot be parsed stops the build (``BadCsvIndexError``) rather than let a triple
join unrelated frames.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re

import numpy as np
from absl import logging

from tfds_batvision import validate
from tfds_batvision.validate import BadCsvIndexError, BadFileError

SPLITS = ("train", "val", "test")
BV2_KINDS = ("audio", "camera", "depth")
# The BV2 columns read (the official loader's); the other six of the real header are optional.
BV2_COLUMNS = tuple(f"{k} {part}" for k in BV2_KINDS for part in ("path", "file name"))
BV1_COLUMNS = ("depth path", "audio path left", "audio path right", "camera path left")
BV1_TIME_COLUMNS = ("time", "timestamp")
BV1_OPTIONAL = ("index", "session", *BV1_TIME_COLUMNS)
# BV1 time stamps are file stems HHMMSS.micro (e.g. 180336.309017).
_HHMMSS = re.compile(r"^(\d{2})(\d{2})(\d{2}(?:\.\d+)?)$")


@dataclasses.dataclass
class Row:
    """One CSV row resolved to absolute file paths."""

    sample_id: str
    csv_path: str
    line: int
    group: str  # BV2 location or BV1 session folder: where intrinsics/poses live
    camera: str
    depth: str = ""
    audio: tuple[str, ...] = ()
    stem: str = ""
    time: float | None = None
    index: int | None = None
    session: str = ""  # BV1: the 'session' column, else the session folder; "" for BV2


def read_csv(
    path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a UTF-8 CSV whose header holds ``required`` columns.

    Columns other than ``required`` may be absent, extra or in any order; a column that is read
    (``required`` or ``optional``) may not appear twice.
    """
    if not os.path.isfile(path):
        raise BadFileError(path, "split CSV does not exist")
    reader = csv.reader(io.StringIO(validate.read_csv_text(path), newline=""))
    rows = []
    try:
        header = next(reader, None)
        header = None if header is None else [h.strip() for h in header]
        validate.require_columns(path, header, required, optional)
        while True:
            line = reader.line_num + 1  # first physical line of the next row
            values = next(reader, None)
            if values is None:
                break
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise BadFileError(
                    path, f"line {line} has {len(values)} fields, header has {len(header)}"
                )
            rows.append((line, {h: v.strip() for h, v in zip(header, values)}))
    except csv.Error as e:
        raise BadFileError(path, f"malformed CSV at line {reader.line_num} ({e})") from e
    return rows


def unique_rows(csv_path: str, rows: list[tuple[Row, dict[str, str]]]) -> list[Row]:
    """The rows with distinct sample ids: an exact repeat of an earlier row is dropped (warned).

    Two rows that name one sample with different values raise BadCsvIndexError, also with
    ``--skip_bad``: which of them is meant is not for the builder to guess.
    """
    first: dict[str, tuple[Row, dict[str, str]]] = {}
    out = []
    for row, values in rows:
        if row.sample_id not in first:
            first[row.sample_id] = (row, values)
            out.append(row)
            continue
        prev, prev_values = first[row.sample_id]
        if values == prev_values:
            logging.warning(
                "%s: line %d repeats line %d exactly (sample %s): repeat dropped.",
                csv_path,
                row.line,
                prev.line,
                row.sample_id,
            )
            continue
        differ = [c for c in values if values[c] != prev_values[c]]
        raise BadCsvIndexError(
            csv_path,
            f"sample {row.sample_id} is listed twice, on lines {prev.line} and {row.line}, "
            f"with different {differ}; keep one of the rows ({validate.NOT_SKIPPED})",
        )
    return out


def bv1_stem(path: str) -> str:
    """Frame stem of a BV1 file: its name without extension and a trailing _left/_right/_depth."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"_(left|right|depth|camera)$", "", stem)


def bv1_time(row: dict[str, str], stem: str) -> float | None:
    """Time stamp (s) of a BV1 row: a 'time'/'timestamp' column, else the HHMMSS.micro stem.

    A stem that is a plain number is taken as seconds; None when nothing parses to a finite
    number (a NaN time would make the sort by time meaningless).
    """
    for col in BV1_TIME_COLUMNS:
        if row.get(col):
            t = _finite_float(row[col])
            if t is not None:
                return t
    m = _HHMMSS.match(stem)
    if m:
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return _finite_float(stem)


def _finite_float(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _no_time_error(csv_path: str, line: int, row: dict[str, str], stem: str) -> BadCsvIndexError:
    """The error for a BV1 row without a time stamp, naming the values that failed to parse."""
    tried = [f"{c} {row[c]!r}" for c in BV1_TIME_COLUMNS if row.get(c)]
    cols = " and ".join(tried) if tried else "no time/timestamp value"
    return BadCsvIndexError(
        csv_path,
        f"line {line}: no time stamp for frame triples: {cols}, and the file stem {stem!r} is "
        f"neither HHMMSS.micro nor a number (bv1_triples sorts frames by time; guessing the order "
        f"could join unrelated frames, so {validate.NOT_SKIPPED})",
    )


def list_bv2_location(root: str, loc: str, split: str) -> list[Row]:
    """Rows of one BV2 location's split CSV; a file is join(root, '<kind> path', '<kind> file name')."""
    csv_path = os.path.join(root, loc, f"{split}.csv")
    rows = []
    for line, r in read_csv(csv_path, BV2_COLUMNS):
        paths = {k: os.path.join(root, r[f"{k} path"], r[f"{k} file name"]) for k in BV2_KINDS}
        # Sample id "<location>/<number>" from depth_<number>.npy (docs/reference.md: .../depth_3011.npy).
        stem = os.path.splitext(r["depth file name"])[0]
        stem = stem[len("depth_") :] if stem.startswith("depth_") else stem
        row = Row(
            sample_id=f"{loc}/{stem}",
            csv_path=csv_path,
            line=line,
            group=loc,
            camera=paths["camera"],
            depth=paths["depth"],
            audio=(paths["audio"],),
            stem=stem,
        )
        rows.append((row, r))
    return unique_rows(csv_path, rows)


def list_bv2_locations(root: str) -> list[str]:
    """BV2 location folders of ``root``: folders holding split CSVs; other entries are logged.

    Hidden entries (``.complete``, the simulator's marker; ``.DS_Store``) are skipped silently.
    """
    if not os.path.isdir(root):
        raise BadFileError(root, "BatVision root (manual dir) does not exist or is not a folder")
    locs = []
    for name in sorted(os.listdir(root)):
        if name.startswith("."):
            continue
        full = os.path.join(root, name)
        if not os.path.isdir(full):
            logging.warning(
                "Skipping %s: not a location folder (stray file in the BV2 root).", full
            )
            continue
        present = [s for s in SPLITS if os.path.isfile(os.path.join(full, f"{s}.csv"))]
        if not present:
            logging.warning("Skipping %s: folder without train/val/test CSVs.", full)
            continue
        locs.append(name)
    if not locs:
        raise BadFileError(root, "no BV2 location folder with train/val/test CSVs")
    return locs


def list_bv1(root: str, split: str, need_time: bool = False) -> list[Row]:
    """Rows of BV1's ``root/<split>.csv`` in file order (not assumed to be time order).

    ``need_time`` (frame triples): a row whose time stamp cannot be parsed raises
    BadCsvIndexError naming the CSV, its line and the values tried; otherwise its time is None.
    """
    if not os.path.isdir(root):
        raise BadFileError(root, "BatVision root (manual dir) does not exist or is not a folder")
    csv_path = os.path.join(root, f"{split}.csv")
    rows = []
    for line, r in read_csv(csv_path, BV1_COLUMNS, BV1_OPTIONAL):
        # Session folder and time stem from the audio path, whose layout is the documented one
        # (<session>/audio/raw_long/<HHMMSS.micro>_left.npy); no public source shows the camera's.
        folder = os.path.normpath(r["audio path left"]).split(os.sep)[0]
        stem = bv1_stem(r["audio path left"])
        index = None
        if r.get("index"):
            try:
                index = int(float(r["index"]))
            except ValueError:
                index = None
        time = bv1_time(r, stem)
        if time is None and need_time:
            raise _no_time_error(csv_path, line, r, stem)
        row = Row(
            sample_id=f"{folder}/{stem}",
            csv_path=csv_path,
            line=line,
            group=folder,
            camera=os.path.join(root, r["camera path left"]),
            depth=os.path.join(root, r["depth path"]),
            audio=(
                os.path.join(root, r["audio path left"]),
                os.path.join(root, r["audio path right"]),
            ),
            stem=stem,
            time=time,
            index=index,
            session=r.get("session") or folder,
        )
        rows.append((row, r))
    return unique_rows(csv_path, rows)


def time_ordered(rows: list[Row]) -> list[Row]:
    """``rows`` sorted by (session, session folder, time); stable, so CSV order breaks ties.

    Rows of one session end up together and in time order whatever the CSV's order. Raises
    BadCsvIndexError for a row without a time stamp (list rows with ``need_time=True`` to name
    the value that failed).
    """
    for r in rows:
        if r.time is None:
            raise BadCsvIndexError(
                r.csv_path,
                f"line {r.line}: no time stamp for frame {r.stem!r} (sample {r.sample_id}); "
                f"frame triples are built in time order ({validate.NOT_SKIPPED})",
            )
    return sorted(rows, key=lambda r: (r.session, r.group, r.time))


def _breaks(values: list[float | None], gap_factor: float) -> list[bool]:
    """breaks[i] True when step values[i] - values[i-1] is not positive or > gap_factor x median."""
    n = len(values)
    out = [False] * n
    if n < 2 or any(v is None for v in values):
        return out
    steps = np.diff(np.asarray(values, np.float64))
    pos = steps[steps > 0]
    med = float(np.median(pos)) if pos.size else 0.0
    for i, s in enumerate(steps, start=1):
        out[i] = bool(s <= 0 or (med > 0 and s > gap_factor * med))
    return out


def scene_segments(rows: list[Row], gap_factor: float) -> list[list[Row]]:
    """Splits time-ordered rows into runs without a scene change (session, time or index jump).

    The frame index (when the CSV has one) is a frame counter attached to its row: after the
    sort by time its step must be positive too, else that is a scene change.
    """
    runs: list[list[Row]] = []
    for r in rows:  # consecutive rows of one session (column and folder)
        if runs and (runs[-1][-1].group, runs[-1][-1].session) == (r.group, r.session):
            runs[-1].append(r)
        else:
            runs.append([r])
    segments = []
    for run in runs:
        tb = _breaks([r.time for r in run], gap_factor)
        ib = _breaks([r.index for r in run], gap_factor)
        seg = [run[0]]
        for i in range(1, len(run)):
            if tb[i] or ib[i]:
                segments.append(seg)
                seg = []
            seg.append(run[i])
        segments.append(seg)
    return segments


def make_triples(rows: list[Row], offset: int, gap_factor: float) -> list[tuple[Row, Row, Row]]:
    """Frame triples (t - offset, t, t + offset) inside one scene segment each (paper Sec. 4.1).

    ``rows`` in any order: they are sorted by (session, time) first (``time_ordered``).
    """
    triples = []
    for seg in scene_segments(time_ordered(rows), gap_factor):
        for i in range(offset, len(seg) - offset):
            triples.append((seg[i - offset], seg[i], seg[i + offset]))
    return triples


def why_no_triples(rows: list[Row], offset: int, gap_factor: float) -> str:
    """Why ``rows`` (not empty) give no triple: the scene segments and what a triple needs."""
    segs = scene_segments(time_ordered(rows), gap_factor)
    longest = max((len(s) for s in segs), default=0)
    return (
        f"{len(rows)} frame(s) in {len(segs)} scene segment(s), the longest {longest} frames; "
        f"a triple needs {2 * offset + 1} consecutive frames of one scene (t - {offset}, t, "
        f"t + {offset}; a scene changes with the session, a backward or long time step, or an "
        f'index jump: docs/reference.md, "Frame triples")'
    )
