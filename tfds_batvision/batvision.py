"""TFDS builder for BatVision: BV1 and BV2 samples (RGB, depth, binaural echo) and BV1 triples.

Reads the real BatVision on-disk layout (docs/reference.md, "BatVision V2 layout", "BatVision V1
layout") from the manual dir and writes
``array_record`` files with Tensor features only, so that neither building nor reading imports
TensorFlow (TFDS's Image feature would). Images are kept as the file's encoded bytes (decoded in
the grain pipeline; a non-RGB image is stored as RGB PNG, ``validate.read_image_bytes``), depth is
stored in metres (mm / 1000, invalid -> 0, not yet capped; resized by nearest neighbour to its
image's size if it differs, with one warning per build), audio as the raw float32 waveform [2, T]
so that the STFT stays a pipeline choice, with ``audio_onset``, the sample at which its chirp
arrives (``onset.detect_onset``; a recording without a chirp is a bad file). Each split's onset
distribution is logged, and recordings far from its median are named in a warning
(docs/reference.md, "Echo onset alignment").

Configs (CSV reading and listing in ``csv_index.py``; only the columns read are required):
  bv2          <root>/<location>/{train,val,test}.csv; files are
               join(root, row['<kind> path'], row['<kind> file name']). Non-folders and folders
               without CSVs in the root are skipped (the official loader breaks on them).
  bv1          <root>/{train,val,test}.csv with 'depth path', 'audio path left',
               'audio path right', 'camera path left' (relative to the root).
  bv1_triples  frames t-20, t, t+20 of one BV1 session (paper Sec. 4.1), rows sorted by
               (session, time) first, never across a scene change: a change of session, a
               time-stamp step that is not positive or is larger than ``gap_factor`` x the run's
               median step, or a frame-index step likewise. A row without a parseable time
               stops the build (``BadCsvIndexError``).

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
that lists one sample (same sample id) twice with different values (or, for triples, a row
without a time stamp), stops the build even with ``skip_bad`` (``BadCsvIndexError``): the CSV is
the split's index, and skipping it or guessing its rows would silently change the split. Other
bad CSVs (missing columns, ragged lines) are skipped whole with ``skip_bad``; bad sample files
skip their sample.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfds_batvision import onset as onset_lib
from tfds_batvision import validate
from tfds_batvision.csv_index import (
    SPLITS,
    Row,
    bv1_stem,
    list_bv1,
    list_bv2_location,
    list_bv2_locations,
    make_triples,
)
from tfds_batvision.intrinsics import NOMINAL_HFOV_DEG, nominal_intrinsics, resize_intrinsics
from tfds_batvision.validate import BadCsvIndexError, BadFileError

INTRINSICS_FILE = "intrinsics.json"
POSES_FILE = "poses.json"
INTRINSICS_KEYS = ("fx", "fy", "cx", "cy", "width", "height")


@dataclasses.dataclass
class BatvisionConfig(tfds.core.BuilderConfig):
    """Which BatVision layout to read and whether to emit frame triples."""

    layout: str = "bv2"  # "bv1" | "bv2"
    triples: bool = False
    triple_offset: int = 20  # paper Sec. 4.1: t-20, t, t+20
    gap_factor: float = 3.0  # a step > gap_factor x median step is a scene change


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


class Batvision(tfds.core.GeneratorBasedBuilder):
    """BatVision BV1/BV2 samples and BV1 frame triples from the real on-disk layout (manual dir)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial TF-free release (Tensor features, array_record).",
        "1.1.0": "audio_onset: the sample at which each recording's chirp arrives; tolerant CSVs, "
        "dtypes, image modes and depth sizes.",
    }
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
        self._depth_resize_warned = False  # one warning per build, not one per file
        # Per split: the distribution of the recordings' chirp onsets, logged at build time.
        self.onset_stats: dict[str, str] = {}
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
                # Sample at which the chirp reaches the ears (tfds_batvision.onset); the input
                # pipeline moves it to the canonical onset before the cut.
                "audio_onset": tfds.features.Tensor(shape=(), dtype=np.int32),
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
                return list_bv1(root, split, need_time=self.builder_config.triples)
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
        self._depth_resize_warned = False
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
        onsets: dict[str, int] = {}
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
            if "audio_onset" in ex:
                onsets[centre.sample_id] = int(ex["audio_onset"])
            yield centre.sample_id, ex
        n = len(self.skipped) - n_before
        if n:
            logging.warning("Split %s: skipped %d bad sample(s) (--skip_bad).", split, n)
        if onsets:
            self._report_onsets(split, onsets)

    def _report_onsets(self, split: str, onsets: dict[str, int]) -> None:
        """Logs a split's chirp onsets and warns about recordings far from their median."""
        summary = onset_lib.onset_summary(onsets)
        self.onset_stats[split] = summary
        logging.info("Split %s echo onsets: %s.", split, summary)
        median, allowed, outliers = onset_lib.onset_outliers(onsets)
        if outliers:
            shown = sorted(outliers.items(), key=lambda kv: -abs(kv[1] - median))[:10]
            logging.warning(
                "Split %s: %d recording(s) have their chirp more than %.0f samples from the "
                "split's median onset %.0f: %s%s. Alignment moves each to sample %d; check that "
                "these recordings hold the chirp and not a louder later sound.",
                split,
                len(outliers),
                allowed,
                median,
                ", ".join(f"{k} at {v}" for k, v in shown),
                ", ..." if len(outliers) > len(shown) else "",
                onset_lib.CANONICAL_ONSET,
            )

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

    def _depth_to_image_size(self, depth: np.ndarray, hw: tuple[int, int], path: str) -> np.ndarray:
        """Depth [h, w] -> [H, W] of its image, by nearest neighbour when the sizes differ.

        Whether BV1 depth has the RGB's size is not published; a map of another size is resized
        (never bilinearly: that would blend invalid zeros into valid depth) and logged once per
        build, not once per file.
        """
        if depth.shape == tuple(hw):
            return depth
        if not self._depth_resize_warned:
            self._depth_resize_warned = True
            logging.warning(
                "%s: depth map is %dx%d but its image is %dx%d: depth resized to the image size by "
                "nearest neighbour (logged once per build; other depth maps whose size differs from "
                "their image's are resized the same way).",
                path,
                depth.shape[0],
                depth.shape[1],
                hw[0],
                hw[1],
            )
        return validate.resize_nearest(depth, hw)

    def _sample_example(self, root: str, row: Row) -> dict:
        image, hw = validate.read_image_bytes(row.camera)
        bv2 = self.builder_config.layout == "bv2"
        depth = self._depth_to_image_size(validate.read_depth_mm(row.depth, bv2), hw, row.depth)
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
        try:
            audio_onset = onset_lib.detect_onset(audio)
        except onset_lib.NoOnsetError as e:
            ears = "" if bv2 else f" (and the right ear {row.audio[1]})"
            raise BadFileError(row.audio[0], f"{e}{ears}: the echo cannot be placed in time") from e
        return {
            "sample_id": row.sample_id,
            "image": image,
            "depth": depth,
            "audio": audio,
            "audio_onset": np.int32(audio_onset),
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
                key = r.stem if r.stem in table else bv1_stem(r.camera)
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
