"""TFDS builder for BatVision: BV1 and BV2 samples (RGB, depth, binaural echo) and BV1 triples.

Reads the real BatVision on-disk layout (docs/reference.md, "BatVision V2 layout", "BatVision V1
layout") from the manual dir and writes
``array_record`` files with Tensor features only, so that neither building nor reading imports
TensorFlow (TFDS's Image feature would). Images are kept as the file's encoded bytes (decoded in
the grain pipeline), depth is stored in metres (mm / 1000, invalid -> 0, not yet capped), audio as
the raw float32 waveform [2, T] so that the STFT stays a pipeline choice.

Configs:
  bv2          <root>/<location>/{train,val,test}.csv (12-column header); files are
               join(root, row['<kind> path'], row['<kind> file name']). Non-folders and folders
               without CSVs in the root are skipped (the official loader breaks on them).
  bv1          <root>/{train,val,test}.csv with 'depth path', 'audio path left',
               'audio path right', 'camera path left' (relative to the root).
  bv1_triples  frames t-20, t, t+20 of one BV1 session (paper Sec. 4.1), never across a scene
               change: a change of session folder, a time-stamp step that is not positive or is
               larger than ``gap_factor`` x the run's median step, or a frame-index step likewise.

Intrinsics: ``<root>/<location>/intrinsics.json`` (BV2) or ``<root>/intrinsics.json`` (BV1) with
keys fx, fy, cx, cy, width, height (pixels; scaled to the image's native size if they differ).
BatVision does not publish its calibration with the CSVs; when the file is absent a nominal
pinhole with the principal point at the image centre and the horizontal field of view
``NOMINAL_HFOV_DEG`` is used and logged (nominal values for a ZED-class stereo camera in HD720;
NOT a calibration: put the real one in intrinsics.json).
BV1 ground-truth poses (optional): ``<root>/<session>/poses.json`` = {file stem: 4x4
camera-to-world nested list}; absent -> identity poses and ``has_pose`` False.

Split CSVs are UTF-8 (a leading byte-order mark is accepted, as Excel writes it). A row that
repeats an earlier row of its CSV exactly is dropped with a warning. A CSV that is not UTF-8, or
that lists one sample (same sample id) twice with different values, stops the build even with
``skip_bad`` (``BadCsvIndexError``): the CSV is the split's index, and skipping it or guessing
its rows would silently change the split. Other bad CSVs (missing columns, ragged lines) are
skipped whole with ``skip_bad``; bad sample files skip their sample.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfds_batvision import validate
from tfds_batvision.intrinsics import nominal_intrinsics, resize_intrinsics
from tfds_batvision.validate import BadCsvIndexError, BadFileError

SPLITS = ("train", "val", "test")
BV2_COLUMNS = (
    "index",
    "time",
    "left audio time",
    "right audio time",
    "audio path",
    "audio file name",
    "camera time",
    "camera path",
    "camera file name",
    "depth time",
    "depth path",
    "depth file name",
)
BV2_KINDS = ("audio", "camera", "depth")
BV1_COLUMNS = ("depth path", "audio path left", "audio path right", "camera path left")
INTRINSICS_FILE = "intrinsics.json"
POSES_FILE = "poses.json"
INTRINSICS_KEYS = ("fx", "fy", "cx", "cy", "width", "height")
# Nominal horizontal FOV (degrees) when no intrinsics.json is given (see module docstring).
NOMINAL_HFOV_DEG = {"bv2": 100.0, "bv1": 85.0}
# BV1 time stamps are file stems HHMMSS.micro (e.g. 180336.309017).
_HHMMSS = re.compile(r"^(\d{2})(\d{2})(\d{2}(?:\.\d+)?)$")


@dataclasses.dataclass
class BatvisionConfig(tfds.core.BuilderConfig):
    """Which BatVision layout to read and whether to emit frame triples."""

    layout: str = "bv2"  # "bv1" | "bv2"
    triples: bool = False
    triple_offset: int = 20  # paper Sec. 4.1: t-20, t, t+20
    gap_factor: float = 3.0  # a step > gap_factor x median step is a scene change


@dataclasses.dataclass
class Row:
    """One CSV row resolved to absolute file paths."""

    sample_id: str
    csv_path: str
    line: int
    group: str  # BV2 location or BV1 session: where intrinsics/poses live
    camera: str
    depth: str = ""
    audio: tuple[str, ...] = ()
    stem: str = ""
    time: float | None = None
    index: int | None = None


def read_intrinsics(folder: str) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(K, (height, width)) from ``folder/intrinsics.json``, or None when absent."""
    path = os.path.join(folder, INTRINSICS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            d = json.load(f)
    except Exception as e:
        raise BadFileError(path, f"unreadable JSON ({e})") from e
    missing = [k for k in INTRINSICS_KEYS if k not in d]
    if missing:
        raise BadFileError(path, f"intrinsics lack key(s) {missing}; need {list(INTRINSICS_KEYS)}")
    k = validate.parse_json_matrix(
        path, [[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], (3, 3)
    )
    return k, (int(d["height"]), int(d["width"]))


def _read_csv(path: str, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a UTF-8 CSV whose header must hold ``required`` columns."""
    if not os.path.isfile(path):
        raise BadFileError(path, "split CSV does not exist")
    reader = csv.reader(io.StringIO(validate.read_csv_text(path), newline=""))
    rows = []
    try:
        header = next(reader, None)
        header = None if header is None else [h.strip() for h in header]
        validate.require_columns(path, header, required)
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


def _unique(csv_path: str, rows: list[tuple[Row, dict[str, str]]]) -> list[Row]:
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


def _bv1_stem(path: str) -> str:
    """Frame stem of a BV1 file: its name without extension and a trailing _left/_right/_depth."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"_(left|right|depth|camera)$", "", stem)


def _bv1_time(row: dict[str, str], stem: str) -> float | None:
    """Time stamp (s) of a BV1 row: a 'time'/'timestamp' column, else the HHMMSS.micro stem."""
    for col in ("time", "timestamp"):
        if row.get(col):
            try:
                return float(row[col])
            except ValueError:
                pass
    m = _HHMMSS.match(stem)
    if m:
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    try:
        return float(stem)
    except ValueError:
        return None


def list_bv2_location(root: str, loc: str, split: str) -> list[Row]:
    """Rows of one BV2 location's split CSV; a file is join(root, '<kind> path', '<kind> file name')."""
    csv_path = os.path.join(root, loc, f"{split}.csv")
    rows = []
    for line, r in _read_csv(csv_path, BV2_COLUMNS):
        paths = {k: os.path.join(root, r[f"{k} path"], r[f"{k} file name"]) for k in BV2_KINDS}
        # Sample id "<location>/<number>" from depth_<number>.npy (docs/reference.md: .../depth_3011.npy).
        stem = os.path.splitext(r["depth file name"])[0]
        stem = stem[len("depth_") :] if stem.startswith("depth_") else stem
        rows.append(
            (
                Row(
                    sample_id=f"{loc}/{stem}",
                    csv_path=csv_path,
                    line=line,
                    group=loc,
                    camera=paths["camera"],
                    depth=paths["depth"],
                    audio=(paths["audio"],),
                    stem=stem,
                ),
                r,
            )
        )
    return _unique(csv_path, rows)


def list_bv2_locations(root: str) -> list[str]:
    """BV2 location folders of ``root``: folders holding split CSVs; other entries are logged."""
    if not os.path.isdir(root):
        raise BadFileError(root, "BatVision root (manual dir) does not exist or is not a folder")
    locs = []
    for name in sorted(os.listdir(root)):
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


def list_bv1(root: str, split: str) -> list[Row]:
    """Rows of BV1's ``root/<split>.csv`` in file order (time-ordered within a session)."""
    if not os.path.isdir(root):
        raise BadFileError(root, "BatVision root (manual dir) does not exist or is not a folder")
    csv_path = os.path.join(root, f"{split}.csv")
    rows = []
    for line, r in _read_csv(csv_path, BV1_COLUMNS):
        session = os.path.normpath(r["camera path left"]).split(os.sep)[0]
        stem = _bv1_stem(r["camera path left"])
        index = None
        if r.get("index"):
            try:
                index = int(float(r["index"]))
            except ValueError:
                index = None
        rows.append(
            (
                Row(
                    sample_id=f"{session}/{stem}",
                    csv_path=csv_path,
                    line=line,
                    group=session,
                    camera=os.path.join(root, r["camera path left"]),
                    depth=os.path.join(root, r["depth path"]),
                    audio=(
                        os.path.join(root, r["audio path left"]),
                        os.path.join(root, r["audio path right"]),
                    ),
                    stem=stem,
                    time=_bv1_time(r, stem),
                    index=index,
                ),
                r,
            )
        )
    return _unique(csv_path, rows)


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
    """Splits time-ordered rows into runs without a scene change (session, time or index jump)."""
    runs: list[list[Row]] = []
    for r in rows:  # consecutive rows of one session folder
        if runs and runs[-1][-1].group == r.group:
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
    """Frame triples (t - offset, t, t + offset) inside one scene segment each (paper Sec. 4.1)."""
    triples = []
    for seg in scene_segments(rows, gap_factor):
        for i in range(offset, len(seg) - offset):
            triples.append((seg[i - offset], seg[i], seg[i + offset]))
    return triples


class Batvision(tfds.core.GeneratorBasedBuilder):
    """BatVision BV1/BV2 samples and BV1 frame triples from the real on-disk layout (manual dir)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial TF-free release (Tensor features, array_record)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download BatVision (BV1 and/or BV2) and pass its root folder as --manual_dir "
        "(BV2: the folder holding the location folders; BV1: the folder holding train.csv)."
    )
    BUILDER_CONFIGS = [
        BatvisionConfig(name="bv2", layout="bv2", description="BV2 RGB-D-echo samples."),
        BatvisionConfig(name="bv1", layout="bv1", description="BV1 RGB-D-echo samples."),
        BatvisionConfig(
            name="bv1_triples",
            layout="bv1",
            triples=True,
            description="BV1 frame triples t-20, t, t+20 (paper Sec. 4.1).",
        ),
    ]

    # TFDS finds the builder's file through importlib_resources, a package TFDS does not install
    # (TensorFlow pulls it in); we install neither, so give the path directly.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:  # pytype: disable=signature-mismatch
        return epath.Path(__file__)

    def __init__(self, *, skip_bad: bool = False, **kwargs):
        """``skip_bad``: skip samples with bad files (recorded in ``self.skipped``) instead of failing."""
        self.skip_bad = skip_bad
        self.skipped: list[tuple[str, str]] = []  # (sample id or file, what is wrong)
        self._intrinsics_cache: dict[str, tuple[np.ndarray, tuple[int, int]] | None] = {}
        self._poses_cache: dict[str, dict | None] = {}
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        enc = tfds.features.Encoding.ZLIB
        if cfg.triples:
            features = {
                "sample_id": tfds.features.Tensor(shape=(), dtype=np.str_),
                "images": tfds.features.Tensor(shape=(3,), dtype=np.object_),
                "intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
                "poses": tfds.features.Tensor(shape=(3, 4, 4), dtype=np.float32),
                "has_pose": tfds.features.Tensor(shape=(), dtype=np.bool_),
            }
        else:
            features = {
                "sample_id": tfds.features.Tensor(shape=(), dtype=np.str_),
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                "depth": tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding=enc),
                "audio": tfds.features.Tensor(shape=(2, None), dtype=np.float32, encoding=enc),
                "intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
            }
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage="https://github.com/AmandineBtto/Batvision-Dataset",
        )

    # -- listing ---------------------------------------------------------------------------------

    def _rows(self, root: str, split: str, locations: list[str]) -> list[Row]:
        """Rows of a split; with skip_bad, a bad CSV is skipped whole and reported.

        A CSV that is not UTF-8 or lists one sample twice with different values (BadCsvIndexError)
        stops the build even with skip_bad.
        """
        if self.builder_config.layout == "bv1":
            try:
                return list_bv1(root, split)
            except BadFileError as e:
                if (
                    not self.skip_bad
                    or isinstance(e, BadCsvIndexError)
                    or os.path.normpath(e.path) == os.path.normpath(root)
                ):
                    raise
                self._skip(e.path, e.problem + " (whole CSV skipped)")
                return []
        rows = []
        for loc in locations:
            try:
                rows.extend(list_bv2_location(root, loc, split))
            except BadFileError as e:
                if not self.skip_bad or isinstance(e, BadCsvIndexError):
                    raise
                self._skip(e.path, e.problem + " (whole CSV skipped)")
        return rows

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        self.skipped = []
        out = {}
        locations = list_bv2_locations(root) if self.builder_config.layout == "bv2" else []
        for split in SPLITS:
            rows = self._rows(root, split, locations)
            if self.builder_config.triples:
                items = make_triples(
                    rows, self.builder_config.triple_offset, self.builder_config.gap_factor
                )
            else:
                items = rows
            if not items:
                # TFDS cannot write a split without examples; an empty CSV gives an absent split, which
                # ``split_size`` reports as 0 examples.
                logging.info("Split %s has no examples: left out of the dataset.", split)
                continue
            out[split] = self._generate_examples(root, split, items)
        if not out:
            raise BadFileError(root, "no examples in any split CSV")
        return out

    # -- examples --------------------------------------------------------------------------------

    def _generate_examples(self, root: str, split: str, items) -> Iterator[tuple[str, dict]]:
        n_before = len(self.skipped)
        for item in items:
            centre = item[1] if isinstance(item, tuple) else item
            try:
                ex = (
                    self._triple_example(root, item)
                    if isinstance(item, tuple)
                    else self._sample_example(root, item)
                )
            except BadFileError as e:
                where = f" (sample {centre.sample_id}, {centre.csv_path} line {centre.line})"
                if not self.skip_bad:
                    raise BadFileError(e.path, e.problem + where) from e
                self._skip(e.path, e.problem + where)
                continue
            yield centre.sample_id, ex
        n = len(self.skipped) - n_before
        if n:
            logging.warning("Split %s: skipped %d bad sample(s) (--skip_bad).", split, n)

    def _skip(self, path: str, problem: str) -> None:
        self.skipped.append((path, problem))
        logging.warning("Skipping bad input %s: %s", path, problem)

    def _intrinsics(self, root: str, group: str, hw: tuple[int, int]) -> np.ndarray:
        layout = self.builder_config.layout
        folder = os.path.join(root, group) if layout == "bv2" else root
        if folder not in self._intrinsics_cache:
            got = read_intrinsics(folder)
            if got is None:
                logging.warning(
                    "No %s in %s: using a nominal pinhole (horizontal FOV %.0f deg, centred principal "
                    "point), not a calibration.",
                    INTRINSICS_FILE,
                    folder,
                    NOMINAL_HFOV_DEG[layout],
                )
            self._intrinsics_cache[folder] = got
        got = self._intrinsics_cache[folder]
        if got is None:
            return nominal_intrinsics(hw[1], hw[0], NOMINAL_HFOV_DEG[layout])
        k, src_hw = got
        return k if tuple(src_hw) == tuple(hw) else resize_intrinsics(k, src_hw, hw)

    def _sample_example(self, root: str, row: Row) -> dict:
        image, hw = validate.read_image_bytes(row.camera)
        bv2 = self.builder_config.layout == "bv2"
        depth = validate.read_depth_mm(row.depth, hw, require_uint16=bv2)
        if bv2:
            audio = validate.read_bv2_wav(row.audio[0])
        else:
            left = validate.read_ear_npy(row.audio[0])
            right = validate.read_ear_npy(row.audio[1])
            if left.shape != right.shape:
                raise BadFileError(
                    row.audio[1],
                    f"right ear has {right.shape[0]} samples, left ear "
                    f"{row.audio[0]} has {left.shape[0]}",
                )
            audio = np.stack([left, right])
        return {
            "sample_id": row.sample_id,
            "image": image,
            "depth": depth,
            "audio": audio,
            "intrinsics": self._intrinsics(root, row.group, hw),
        }

    def _poses(self, root: str, session: str) -> dict | None:
        if session not in self._poses_cache:
            path = os.path.join(root, session, POSES_FILE)
            poses = None
            if os.path.exists(path):
                try:
                    with open(path) as f:
                        poses = json.load(f)
                except Exception as e:
                    raise BadFileError(path, f"unreadable JSON ({e})") from e
                if not isinstance(poses, dict):
                    raise BadFileError(path, "expected {file stem: 4x4 camera-to-world matrix}")
            self._poses_cache[session] = poses
        return self._poses_cache[session]

    def _triple_example(self, root: str, triple: tuple[Row, Row, Row]) -> dict:
        images, hws = [], []
        for r in triple:
            data, hw = validate.read_image_bytes(r.camera)
            images.append(data)
            hws.append(hw)
        if len(set(hws)) != 1:
            raise BadFileError(triple[2].camera, f"frame sizes differ within a triple: {hws}")
        poses = np.tile(np.eye(4, dtype=np.float32), (3, 1, 1))
        table = self._poses(root, triple[1].group)
        has_pose = False
        if table is not None:
            path = os.path.join(root, triple[1].group, POSES_FILE)
            for i, r in enumerate(triple):
                key = r.stem if r.stem in table else _bv1_stem(r.camera)
                if key not in table:
                    raise BadFileError(path, f"no pose for frame {r.stem}")
                poses[i] = validate.parse_json_matrix(path, table[key], (4, 4))
            has_pose = True
        return {
            "sample_id": triple[1].sample_id,
            "images": np.array(images, dtype=object),
            "intrinsics": self._intrinsics(root, triple[1].group, hws[0]),
            "poses": poses,
            "has_pose": has_pose,
        }


def split_size(builder: tfds.core.DatasetBuilder, split: str) -> int:
    """Examples in ``split`` of a prepared builder; 0 for a split whose CSVs were empty."""
    return builder.info.splits[split].num_examples if split in builder.info.splits else 0
