"""TFDS builder for BatVision: BV1 and BV2 samples (RGB, depth, binaural echo) and BV1 triples.

Reads the real BatVision on-disk layout (docs/reference.md, "BatVision V2 layout", "BatVision V1
layout") from the manual dir and writes
``array_record`` files with Tensor features only, so that neither building nor reading imports
TensorFlow (TFDS's Image feature would). Images are kept as the file's encoded bytes (decoded in
the grain pipeline; a non-RGB image is stored as RGB PNG, ``validate.read_image_bytes``) or, in a
training-size config, as pixels at that size (below); depth is stored in metres (mm / 1000,
invalid -> 0, not yet capped; resized by nearest neighbour to its image's size if it differs,
with one warning per build), audio as the raw float32 waveform [2, T]
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
               stops the build (``BadCsvIndexError``). Each frame is stored once, in split
               ``<split>_frames``; split ``<split>`` holds the triples as indices into it, and
               ``as_data_source`` reads them back as three images each (``stored.TripleSource``).
  <config>_<H>x<W>  (e.g. bv2_256x512, ``--image_size=256,512``) the same examples with images
               stored as uint8 pixels [H, W, 3], decoded and resized once here exactly as the
               input pipeline would (``stored.decode_resized``), intrinsics for that size, depth
               resized by nearest neighbour to [H, W], and in val/test ``depth_full``, the
               native-size depth that evaluation scores against (empty [0, 0] in train).

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
from tfds_batvision import stored, validate
from tfds_batvision.csv_index import (
    SPLITS,
    Row,
    bv1_stem,
    list_bv1,
    list_bv2_location,
    list_bv2_locations,
    make_triples,
    time_ordered,
    why_no_triples,
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
    # (H, W) at which images (and depth) are stored, decoded and resized once at build time
    # (``stored.decode_resized``); () keeps the encoded files and native-size depth.
    image_size: tuple[int, ...] = ()


def read_intrinsics(folder: str) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(K, (height, width)) from ``folder/intrinsics.json``, or None when absent."""
    path = os.path.join(folder, INTRINSICS_FILE)
    if not os.path.exists(path):
        return None
    return read_intrinsics_file(path)


def read_intrinsics_file(path: str) -> tuple[np.ndarray, tuple[int, int]]:
    """(K, (height, width)) of an intrinsics JSON file; BadFileError naming it when malformed."""
    try:
        with open(path) as f:
            d = json.load(f)
    except Exception as e:
        raise BadFileError(path, f"unreadable JSON ({e})") from e
    if not isinstance(d, dict):
        raise BadFileError(
            path,
            f"intrinsics must be a JSON object with keys {list(INTRINSICS_KEYS)}, "
            f"got a {type(d).__name__}",
        )
    missing = [k for k in INTRINSICS_KEYS if k not in d]
    if missing:
        raise BadFileError(path, f"intrinsics lack key(s) {missing}; need {list(INTRINSICS_KEYS)}")
    k = validate.parse_json_matrix(
        path, [[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], (3, 3)
    )
    size = []
    for key in ("height", "width"):
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v <= 0:
            raise BadFileError(
                path, f"intrinsics {key} must be a positive whole number of pixels, got {v!r}"
            )
        size.append(int(v))
    return k, (size[0], size[1])


class Batvision(tfds.core.GeneratorBasedBuilder):
    """BatVision BV1/BV2 samples and BV1 frame triples from the real on-disk layout (manual dir)."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial TF-free release (Tensor features, array_record).",
        "1.1.0": "audio_onset: the sample at which each recording's chirp arrives; tolerant CSVs, "
        "dtypes, image modes and depth sizes.",
        "1.2.0": "Configs <config>_<H>x<W> store images as uint8 pixels at a training size (and "
        "depth_full in val/test); bv1_triples stores each frame once (split <split>_frames) and "
        "triples as frame indices, in (session, time) order.",
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

    @classmethod
    def get_builder_config(cls, name: str, version=None) -> BatvisionConfig | None:
        """A listed config, or one with a stored image size: ``bv2_256x512`` = bv2 at 256x512."""
        config = super().get_builder_config(name, version)
        if config is not None:
            return config
        try:
            base, size = stored.parse_config_name(name)
        except ValueError:
            return None
        proto = next(c for c in cls.BUILDER_CONFIGS if c.name == base)
        return dataclasses.replace(
            proto,
            name=name,
            image_size=size,
            description=f"{proto.description} Images stored at {size[0]}x{size[1]}.",
        )

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
        raw = tfds.features.Encoding.BYTES  # the array's bytes (not one int64 per value)
        size = tuple(cfg.image_size)
        # What training reads every epoch: a training-size config leaves its compression to
        # array_record's own zstd (zlib on top cost ~1 ms per read of depth or audio each).
        per_read = raw if size else enc
        if cfg.triples:
            # One feature dict for both kinds of record: a frame (split <split>_frames) has
            # frames = -1; a triple (split <split>) has no image (b"" or 1x1 pixels), zero
            # intrinsics and pose, and frames = indices of t-20, t, t+20 in its frames split.
            image = (
                tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding=raw)
                if size
                else tfds.features.Tensor(shape=(), dtype=np.object_)
            )
            features = {
                "sample_id": tfds.features.Tensor(shape=(), dtype=np.str_),
                "image": image,
                "intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
                "pose": tfds.features.Tensor(shape=(4, 4), dtype=np.float32),
                "has_pose": tfds.features.Tensor(shape=(), dtype=np.bool_),
                "frames": tfds.features.Tensor(shape=(3,), dtype=np.int32),
            }
        else:
            features = {
                "sample_id": tfds.features.Tensor(shape=(), dtype=np.str_),
                # Pixels: nothing to decode per read (a JPEG: ~2.6 ms at reduced size, ~19 in full).
                "image": tfds.features.Tensor(shape=(*size, 3), dtype=np.uint8, encoding=raw)
                if size
                else tfds.features.Tensor(shape=(), dtype=np.object_),
                "depth": tfds.features.Tensor(
                    shape=size or (None, None), dtype=np.float32, encoding=per_read
                ),
                "audio": tfds.features.Tensor(shape=(2, None), dtype=np.float32, encoding=per_read),
                # Sample at which the chirp reaches the ears (tfds_batvision.onset); the input
                # pipeline moves it to the canonical onset before the cut.
                "audio_onset": tfds.features.Tensor(shape=(), dtype=np.int32),
                "intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
            }
            if size:  # evaluation's ground truth at the native size; empty [0, 0] in train
                features["depth_full"] = tfds.features.Tensor(
                    shape=(None, None), dtype=np.float32, encoding=enc
                )
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage="https://github.com/AmandineBtto/Batvision-Dataset",
            # Triples point at frames by their index: frames stay in the order they are written.
            disable_shuffling=cfg.triples,
        )

    def as_data_source(self, split=None, **kwargs):
        """TFDS's random-access source; a triples split reads as records of three frames.

        For ``bv1_triples*``, split ``s`` gives {sample_id, images, intrinsics, poses, has_pose}
        per triple (``stored.TripleSource`` over ``s`` and ``s_frames``); ``s_frames`` gives
        the stored frames themselves.
        """
        if not self.builder_config.triples:
            return super().as_data_source(split, **kwargs)
        if split is None:
            names = [s for s in self.info.splits if not s.endswith(stored.FRAMES_SUFFIX)]
            return {s: self.as_data_source(s, **kwargs) for s in names}
        base = str(split).split("[")[0]
        if stored.frames_split(base) not in self.info.splits:
            return super().as_data_source(split, **kwargs)
        return stored.TripleSource(
            super().as_data_source(split, **kwargs),
            super().as_data_source(stored.frames_split(base), **kwargs),
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
        out, no_triples = {}, []
        locations = list_bv2_locations(root) if self.builder_config.layout == "bv2" else []
        for split in SPLITS:
            rows = self._rows(root, split, locations)
            if self.builder_config.triples:
                triples = make_triples(
                    rows, self.builder_config.triple_offset, self.builder_config.gap_factor
                )
                if triples:
                    # TFDS writes the splits one after the other in this order: the frames first,
                    # so that the triples know which frames were written, and where.
                    written: dict[str, tuple[int, tuple[int, int]]] = {}
                    out[stored.frames_split(split)] = self._generate_frames(
                        root, split, triples, written
                    )
                    out[split] = self._generate_triples(split, triples, written)
                elif rows:
                    why = why_no_triples(
                        rows, self.builder_config.triple_offset, self.builder_config.gap_factor
                    )
                    logging.warning("Split %s has rows but no frame triple: %s", split, why)
                    no_triples.append(f"{split}: {why}")
            elif rows:
                out[split] = self._generate_examples(root, split, rows)
            if split not in out:
                # TFDS cannot write a split without examples; an empty CSV gives an absent split, which
                # ``split_size`` reports as 0 examples.
                logging.info("Split %s has no examples: left out of the dataset.", split)
        if not out:
            if no_triples:
                raise BadFileError(root, "no frame triple in any split; " + "; ".join(no_triples))
            raise BadFileError(root, "no examples in any split CSV")
        return out

    # -- examples --------------------------------------------------------------------------------

    def _bad(self, e: BadFileError, row: Row) -> None:
        """Raises ``e`` naming the sample and CSV line, or (skip_bad) records it as skipped."""
        where = f" (sample {row.sample_id}, {row.csv_path} line {row.line})"
        if not self.skip_bad:
            raise BadFileError(e.path, e.problem + where) from e
        self._skip(e.path, e.problem + where)

    def _generate_examples(self, root: str, split: str, rows) -> Iterator[tuple[str, dict]]:
        n_before = len(self.skipped)
        onsets: dict[str, int] = {}
        for row in rows:
            try:
                ex = self._sample_example(root, row, split)
            except BadFileError as e:
                self._bad(e, row)
                continue
            onsets[row.sample_id] = int(ex["audio_onset"])
            yield row.sample_id, ex
        n = len(self.skipped) - n_before
        if n:
            logging.warning("Split %s: skipped %d bad sample(s) (--skip_bad).", split, n)
        if onsets:
            self._report_onsets(split, onsets)

    def _generate_frames(
        self, root: str, split: str, triples, written: dict[str, tuple[int, tuple[int, int]]]
    ) -> Iterator[tuple[int, dict]]:
        """Each frame that a triple uses, once, in (session, time) order; key = its index.

        Fills ``written``: frame sample id -> (index in the frames split, native (H, W)).
        """
        frames = time_ordered(list({r.sample_id: r for t in triples for r in t}.values()))
        n_before = len(self.skipped)
        for row in frames:
            try:
                ex, hw = self._frame_example(root, row)
            except BadFileError as e:
                self._bad(e, row)
                continue
            written[row.sample_id] = (len(written), hw)
            yield written[row.sample_id][0], ex
        n = len(self.skipped) - n_before
        if n:
            logging.warning("Split %s: skipped %d bad frame(s) (--skip_bad).", split, n)

    def _generate_triples(
        self, split: str, triples, written: dict[str, tuple[int, tuple[int, int]]]
    ) -> Iterator[tuple[int, dict]]:
        """Triples as indices into the frames split, which TFDS has written before this one."""
        size = tuple(self.builder_config.image_size)
        # No image in a triple record: TFDS (4.9) misreads the shape of an empty pixel array.
        empty = np.zeros((1, 1, 3), np.uint8) if size else b""
        n, dropped = 0, 0
        for triple in triples:
            if any(r.sample_id not in written for r in triple):
                dropped += 1  # a frame of it was bad and skipped (listed once, as that frame)
                continue
            hws = [written[r.sample_id][1] for r in triple]
            if len(set(hws)) != 1:
                self._bad(
                    BadFileError(triple[2].camera, f"frame sizes differ within a triple: {hws}"),
                    triple[1],
                )
                continue
            ex = {
                "sample_id": triple[1].sample_id,
                "image": empty,
                "intrinsics": np.zeros((3, 3), np.float32),
                "pose": np.zeros((4, 4), np.float32),
                "has_pose": False,
                "frames": np.array([written[r.sample_id][0] for r in triple], np.int32),
            }
            yield n, ex
            n += 1
        if dropped:
            logging.warning(
                "Split %s: left out %d triple(s) with a skipped frame (--skip_bad).", split, dropped
            )

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

    def _stored_image(
        self, root: str, row: Row
    ) -> tuple[bytes | np.ndarray, np.ndarray, tuple[int, int]]:
        """(image as stored, intrinsics at its stored size, native (H, W)) of a row's camera file.

        At a training size: pixels decoded and resized as the pipeline does (``decode_resized``)
        and K for that size (``resize_intrinsics``, the pipeline's own step); else the file's
        bytes and K at its native size.
        """
        data, hw = validate.read_image_bytes(row.camera)
        k = self._intrinsics(root, row.group, hw)
        size = tuple(self.builder_config.image_size)
        if not size:
            return data, k, hw
        return stored.decode_resized(data, size)[0], resize_intrinsics(k, hw, size), hw

    def _sample_example(self, root: str, row: Row, split: str) -> dict:
        image, k, hw = self._stored_image(root, row)
        bv2 = self.builder_config.layout == "bv2"
        depth = self._depth_to_image_size(validate.read_depth_mm(row.depth, bv2), hw, row.depth)
        size = tuple(self.builder_config.image_size)
        extra = {}
        if size:
            # Nearest, as the pipeline's resize_nearest (the same rule): the same depth it gives.
            depth, full = validate.resize_nearest(depth, size), depth
            # Train reads only the stored size; evaluation scores at the native resolution.
            extra["depth_full"] = full if split != "train" else np.zeros((0, 0), np.float32)
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
            "intrinsics": k,
            **extra,
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

    def _frame_example(self, root: str, row: Row) -> tuple[dict, tuple[int, int]]:
        """(record of one BV1 frame of a triple, its native (H, W))."""
        image, k, hw = self._stored_image(root, row)
        pose, has_pose = np.eye(4, dtype=np.float32), False
        table = self._poses(root, row.group)
        if table is not None:
            path = os.path.join(root, row.group, POSES_FILE)
            key = row.stem if row.stem in table else bv1_stem(row.camera)
            if key not in table:
                raise BadFileError(path, f"no pose for frame {row.stem}")
            pose, has_pose = validate.parse_json_matrix(path, table[key], (4, 4)), True
        ex = {
            "sample_id": row.sample_id,
            "image": image,
            "intrinsics": k,
            "pose": pose,
            "has_pose": has_pose,
            "frames": np.full(3, -1, np.int32),
        }
        return ex, hw


def split_size(builder: tfds.core.DatasetBuilder, split: str) -> int:
    """Examples in ``split`` of a prepared builder; 0 for a split whose CSVs were empty."""
    return builder.info.splits[split].num_examples if split in builder.info.splits else 0
