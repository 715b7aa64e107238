"""How the builder stores what the input pipeline would otherwise redo every epoch.

Numpy and Pillow only (no TFDS), so that the input pipeline shares these definitions with the
builder without importing it (docs/reference.md, "Building the datasets", "Frame triples").

- Training-resolution configs (``bv2_256x512``, ...): images stored as uint8 pixels already
  decoded and resized by ``decode_resized``, the function the pipeline decodes JPEG/PNG bytes
  with, so that a stored image is bit for bit what decoding at train time gives.
- Training-resolution files without compression (``store_uncompressed``): TFDS writes
  array_record with zstd, which saves ~7% on raw pixels but makes decompression ~4/5 of the
  host's cost of reading a stored frame (0.5 of 0.64 ms for 192x640x3 on a Xeon core).
- Frames stored once (``bv1_triples*``): split ``<split>_frames`` holds each frame that some triple
  uses, split ``<split>`` holds the triples as three indices into it; ``TripleSource`` reads a
  triple back as the record of three images that the pipeline takes.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import PIL.Image

BASE_CONFIGS = ("bv1", "bv2", "bv1_triples")
_SIZED_NAME = re.compile(r"^(bv1|bv2|bv1_triples)_(\d+)x(\d+)$")
FRAMES_SUFFIX = "_frames"


def config_name(base: str, image_size: Sequence[int] = ()) -> str:
    """``bv2`` with image_size (256, 512) -> ``bv2_256x512``; without a size, ``base``."""
    if base not in BASE_CONFIGS:
        raise ValueError(f"unknown BatVision config {base!r}; choose one of {BASE_CONFIGS}")
    if not image_size:
        return base
    h, w = check_size(image_size)
    return f"{base}_{h}x{w}"


def parse_config_name(name: str) -> tuple[str, tuple[int, ...]]:
    """``bv2_256x512`` -> ("bv2", (256, 512)); ``bv2`` -> ("bv2", ()); else ValueError."""
    if name in BASE_CONFIGS:
        return name, ()
    m = _SIZED_NAME.match(name)
    if not m:
        raise ValueError(
            f"unknown BatVision config {name!r}; choose one of {BASE_CONFIGS}, optionally with "
            "a stored image size as <config>_<H>x<W> (e.g. bv2_256x512)"
        )
    return m.group(1), check_size((int(m.group(2)), int(m.group(3))))


def check_size(size: Sequence[int]) -> tuple[int, int]:
    """(H, W) of positive integers, or ValueError."""
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise ValueError(f"image size must be two positive integers (H, W), got {tuple(size)}")
    return int(size[0]), int(size[1])


def frames_split(split: str) -> str:
    """The split that holds the frames of ``split``'s triples: ``train`` -> ``train_frames``."""
    return split + FRAMES_SUFFIX


def decode_resized(data: bytes, size: Sequence[int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded JPEG/PNG -> (uint8 [H, W, 3] resized bilinearly to ``size``, native (H0, W0)).

    JPEG is decoded at a reduced DCT scale when that still covers ``size`` (Pillow's draft mode,
    ~2.6 ms instead of ~19 ms for a 1280x720 frame at 256x512). The builder stores exactly this
    for a training-resolution config and the pipeline decodes bytes with it, so both agree bit
    for bit.
    """
    h, w = size
    with PIL.Image.open(io.BytesIO(data)) as im:
        native = (im.size[1], im.size[0])
        im.draft("RGB", (w, h))
        im = im.convert("RGB")
        if im.size != (w, h):
            im = im.resize((w, h), PIL.Image.BILINEAR)
        return np.asarray(im, np.uint8), native


UNCOMPRESSED = "group_size:1,uncompressed"  # one record per chunk, as TFDS writes them


def store_uncompressed(dataset_dir: str | os.PathLike) -> list[Path]:
    """Rewrites the array_record files in ``dataset_dir`` that are compressed without
    compression, record for record (the same records, the same order; readers take either).
    Returns the files rewritten. Each is written beside itself and moved over it, so an
    interrupted call leaves every file whole, compressed or not; a second call skips done ones.
    """
    from array_record.python import array_record_module  # noqa: PLC0415  (only when building)

    done = []
    for path in sorted(Path(dataset_dir).glob("*.array_record-*")):
        reader = array_record_module.ArrayRecordReader(os.fspath(path))
        try:
            if "uncompressed" in reader.writer_options_string().split(","):
                continue
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            writer = array_record_module.ArrayRecordWriter(os.fspath(tmp), UNCOMPRESSED)
            try:
                for i in range(reader.num_records()):
                    writer.write(reader.read([i])[0])
            finally:
                writer.close()
        finally:
            reader.close()
        os.replace(tmp, path)
        done.append(path)
    return done


class TripleSource:
    """Random access to triples stored as frame indices, as records of three images.

    ``triples``: records {sample_id, frames int32 [3]} (indices t-20, t, t+20 into ``frames``);
    ``frames``: records {sample_id, image, intrinsics [3, 3], pose [4, 4], has_pose}. Item i is
    {sample_id, images [3] (encoded bytes, object) or [3, H, W, 3] uint8, intrinsics [3, 3] (the
    centre frame's; one session, one size), poses [3, 4, 4], has_pose}: the record a triple had
    when each one stored its own three images. Picklable, for grain's worker processes.
    """

    def __init__(self, triples: Sequence[dict], frames: Sequence[dict]):
        self.triples = triples
        self.frames = frames

    def __len__(self) -> int:
        return len(self.triples)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        t = self.triples[index]
        # One read each: TFDS's batched __getitems__ (a thread pool) costs more CPU for three.
        f = [self.frames[int(i)] for i in t["frames"]]
        images = [x["image"] for x in f]
        raw = isinstance(images[0], np.ndarray) and images[0].ndim == 3
        return {
            "sample_id": t["sample_id"],
            "images": np.stack(images) if raw else np.array(images, dtype=object),
            "intrinsics": np.asarray(f[1]["intrinsics"], np.float32),
            "poses": np.stack([np.asarray(x["pose"], np.float32) for x in f]),
            "has_pose": np.bool_(all(bool(x["has_pose"]) for x in f)),
        }

    def __repr__(self) -> str:
        return f"TripleSource({len(self.triples)} triples over {len(self.frames)} frames)"
