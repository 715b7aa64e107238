"""Checks of the BatVision files at the builder's boundary, one reader/validator per file kind.

Each function reads one file, checks it against the real BatVision formats (docs/reference.md) and
returns its content, or raises ``BadFileError`` naming the file and what is wrong, so that a build
stops with a useful message (or, with ``--skip_bad``, skips the sample and reports it).
``BadCsvIndexError`` marks split-CSV problems that stop the build even with ``--skip_bad``.
"""

from __future__ import annotations

import codecs
import io
import os
import struct
from typing import Any

import numpy as np
import PIL.Image
import soundfile as sf

# BV2 audio format (docs/reference.md): WAV, int32 PCM, 2 channels, 44100 Hz.
BV2_SAMPLE_RATE = 44100
BV2_CHANNELS = 2
BV2_SUBTYPE = "PCM_32"
# BV2 int32 PCM is scaled to [-1, 1) by this factor (COMMON feature contract).
INT32_SCALE = 2.0**31
MM_PER_M = 1000.0


class BadFileError(ValueError):
    """A BatVision file that is missing, truncated or in the wrong format."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class BadCsvIndexError(BadFileError):
    """A split CSV whose list of samples cannot be trusted (not UTF-8, conflicting rows).

    Fatal even with ``--skip_bad``: the CSV is the split's index, not one sample, and which of its
    samples are meant is not for the builder to guess.
    """


NOT_SKIPPED = "a split CSV is the index of its samples, so --skip_bad does not skip it"


def _read_nonempty(path: str | os.PathLike) -> bytes:
    if not os.path.exists(path):
        raise BadFileError(path, "file does not exist (referenced by the CSV)")
    if not os.path.isfile(path):
        raise BadFileError(path, "is not a regular file")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise BadFileError(path, "file is empty (0 bytes)")
    return data


def check_riff(path, data: bytes) -> None:
    """Raises if the WAV's RIFF chunks promise more bytes than the file holds (truncation)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadFileError(path, "not a RIFF/WAVE file")
    pos = 12
    seen_data = False
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if cid == b"data":
            seen_data = True
            if pos + 8 + size > len(data):
                raise BadFileError(
                    path,
                    f"truncated WAV: data chunk declares {size} bytes but only "
                    f"{len(data) - pos - 8} are present",
                )
            if size == 0:
                raise BadFileError(path, "WAV has no audio frames (empty data chunk)")
        pos += 8 + size + (size & 1)
    if not seen_data:
        raise BadFileError(path, "truncated WAV: no data chunk")


def read_bv2_wav(path: str | os.PathLike) -> np.ndarray:
    """Reads a BV2 echo WAV: int32 PCM, 2 channels, 44.1 kHz -> float32 [2, T] = int32 / 2**31."""
    data = _read_nonempty(path)
    check_riff(path, data)
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as e:  # libsndfile's own error text is the useful part
        raise BadFileError(path, f"unreadable WAV ({e})") from e
    if info.samplerate != BV2_SAMPLE_RATE:
        raise BadFileError(path, f"sample rate {info.samplerate} Hz, expected {BV2_SAMPLE_RATE}")
    if info.channels != BV2_CHANNELS:
        raise BadFileError(
            path, f"{info.channels} channel(s), expected {BV2_CHANNELS} [left, right]"
        )
    if info.subtype != BV2_SUBTYPE:
        raise BadFileError(
            path, f"sample format {info.subtype}, expected int32 PCM ({BV2_SUBTYPE})"
        )
    pcm, _ = sf.read(io.BytesIO(data), dtype="int32", always_2d=True)
    if pcm.shape[0] == 0:
        raise BadFileError(path, "WAV has no audio frames")
    # Exact: int32 -> float64 is exact, and / 2**31 only changes the exponent.
    return (pcm.T.astype(np.float64) / INT32_SCALE).astype(np.float32)


def _load_npy(path) -> np.ndarray:
    data = _read_nonempty(path)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:
        raise BadFileError(path, f"truncated or corrupt .npy ({type(e).__name__}: {e})") from e
    if not isinstance(arr, np.ndarray):
        raise BadFileError(path, "not a single .npy array")
    if arr.size == 0:
        raise BadFileError(path, f"empty array of shape {arr.shape}")
    return arr


def _is_real_number(dtype: np.dtype) -> bool:
    """Integer or floating dtype (not bool, complex, string or object)."""
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)


def read_depth_mm(path: str | os.PathLike, require_uint16: bool) -> np.ndarray:
    """Reads a depth ``.npy`` in millimetres [h, w] -> float32 metres [h, w], invalid = 0.

    Invalid: 0, NaN, -inf, negatives and +inf. The official BV1 loader maps +inf to its 12 m cap
    (a side effect of ``nan_to_num``); here +inf is 0 too. AVS-Net's valid mask is
    ``0 < gt < max_depth``, so a pixel at the cap is invalid either way, and 0 says "no
    measurement" explicitly (docs/reference.md, "Depth units and caps").
    ``require_uint16``: BV2 stores uint16 mm; BV1 stores any numeric dtype.
    The shape is the file's; the builder fits it to the image (``resize_nearest``).
    """
    arr = _load_npy(path)
    if require_uint16 and arr.dtype != np.uint16:
        raise BadFileError(path, f"depth dtype {arr.dtype}, expected uint16 millimetres")
    if not _is_real_number(arr.dtype):
        raise BadFileError(path, f"depth dtype {arr.dtype} is not a real number type")
    if arr.ndim != 2:
        raise BadFileError(path, f"depth has shape {arr.shape}, expected 2-D [H, W]")
    m = arr.astype(np.float64) / MM_PER_M
    m[~np.isfinite(m) | (m < 0)] = 0.0
    return m.astype(np.float32)


def resize_nearest(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of [h, w] to [H, W]: every output value is one of the inputs.

    Source index floor((i + 0.5) * in / out), the input pixel whose area holds the output pixel's
    centre: the input pipeline's rule (docs/reference.md, "Depth units and caps"); bilinear would
    blend invalid zeros into valid depth.
    """
    h, w = hw
    rows = np.minimum(((np.arange(h) + 0.5) * x.shape[0] / h).astype(np.int64), x.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * x.shape[1] / w).astype(np.int64), x.shape[1] - 1)
    return x[rows[:, None], cols[None, :]]


def read_ear_npy(path: str | os.PathLike) -> np.ndarray:
    """Reads one BV1 ear waveform ``.npy``: 1-D of any real dtype -> float32 [T].

    Integers are cast, not rescaled (int16 1000 -> 1000.0), as the official loader does: it
    casts whatever it finds to float32. Complex or non-numeric dtypes are an error.
    """
    arr = _load_npy(path)
    if not _is_real_number(arr.dtype):
        raise BadFileError(path, f"audio dtype {arr.dtype}, expected a real-valued waveform")
    if arr.ndim != 1:
        raise BadFileError(
            path, f"audio has shape {arr.shape}, expected one channel [T] per ear file"
        )
    return arr.astype(np.float32)


def read_image_bytes(path: str | os.PathLike) -> tuple[bytes, tuple[int, int]]:
    """Reads an encoded camera image (JPEG/PNG), decodes it fully to check it; -> (bytes, (H, W)).

    An RGB image keeps its file's bytes. Any other 8-bit mode (RGBA, greyscale L, palette P, LA,
    CMYK, ...) is converted to RGB and re-encoded as lossless PNG, so the stored images are
    always RGB: one format downstream, and alpha is dropped here, explicitly, rather than left to
    whichever decoder reads it (some composite it on black). 16-bit and float images (modes I;16,
    I, F) are an error: Pillow would clip them to 255 rather than scale them.
    """
    data = _read_nonempty(path)
    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            fmt, mode = im.format, im.mode
            im.load()  # raises on truncated data (PIL.ImageFile.LOAD_TRUNCATED_IMAGES is False)
            w, h = im.size
            if fmt in ("JPEG", "PNG") and mode != "RGB" and not mode.startswith(("I", "F")):
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="PNG")
                data = buf.getvalue()
    except Exception as e:
        raise BadFileError(path, f"truncated or corrupt image ({type(e).__name__}: {e})") from e
    if fmt not in ("JPEG", "PNG"):
        raise BadFileError(path, f"image format {fmt}, expected JPEG or PNG")
    if mode.startswith(("I", "F")):
        raise BadFileError(
            path,
            f"image mode {mode} (16-bit or float), expected 8-bit RGB or a mode convertible to it",
        )
    return data, (h, w)


def read_csv_text(path: str | os.PathLike) -> str:
    """A split CSV's text: UTF-8, with or without a byte-order mark; else BadCsvIndexError."""
    with open(path, "rb") as f:
        data = f.read()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        pos = skip + e.start  # offset in the file
        line = data.count(b"\n", 0, pos) + 1
        col = pos - (data.rfind(b"\n", 0, pos) + 1) + 1
        hint = (
            " (it starts with a UTF-16 byte-order mark)"
            if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            else ""
        )
        raise BadCsvIndexError(
            path,
            f"not UTF-8 text{hint}: byte 0x{data[pos]:02x} at line {line}, byte {col} of the "
            f"line (file offset {pos}), {e.reason}; save the CSV as UTF-8 ({NOT_SKIPPED})",
        ) from e


def require_columns(
    csv_path: str | os.PathLike,
    header: list[str] | None,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> None:
    """Raises if the CSV header lacks a required column or repeats a column that is read.

    Other columns may be absent, extra or in any order.
    """
    if header is None:
        raise BadFileError(csv_path, "CSV is empty (no header line)")
    missing = [c for c in required if c not in header]
    if missing:
        raise BadFileError(
            csv_path,
            f"CSV lacks column(s) {missing}; header is {header} (columns read: {list(required)})",
        )
    twice = [c for c in (*required, *optional) if header.count(c) > 1]
    if twice:
        raise BadFileError(
            csv_path, f"CSV has column(s) {twice} more than once; header is {header}"
        )


def parse_json_matrix(path, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A nested-list matrix from a JSON file as float32 of ``shape``, or BadFileError."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except Exception as e:
        raise BadFileError(path, f"not a numeric matrix ({e})") from e
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise BadFileError(path, f"expected a finite {shape} matrix, got shape {arr.shape}")
    return arr
