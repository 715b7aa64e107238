"""The inputs of `MetricScaler` and `python -m avs_jax.predict`, read and checked.

Images, echo recordings and relative predictions come as files or arrays; each reader returns
arrays in the layout the training pipeline uses, or raises `BadSampleError` (a PredictionError
for a relative map) naming the file (or "image array", "echo array") and what is wrong
(docs/predict.md, "Inputs"):

* images: JPEG or PNG files, decoded exactly as the training pipeline decodes a BatVision frame
  (`tfds_batvision.validate.read_image_bytes`, then `avs_jax.data.transforms.decode_image`), or
  `[H0, W0, 3]` arrays, uint8 or float in [0, 1] (quantised to 8 bits, as every camera frame the
  model saw, then decoded like a PNG of those pixels);
* echoes: WAV files at the run's sample rate (44.1 kHz), 2 channels [left, right], 16/24/32-bit
  PCM or float, read as float at full scale 1 (int32 exactly as the BatVision builder reads it),
  or `.npy` files and arrays `[2, T]` ([left, right], channels first, BatVision's layout) of float
  samples at full scale 1 and the same rate;
* relative predictions: `.npy` files or arrays, 2-D at any resolution, finite and > 0 at every
  pixel (`avs_jax.evaluation.external.check_prediction`, the evaluation's own check).
"""

from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
import PIL.Image
import PIL.ImageOps
import soundfile as sf

from avs_jax.data.transforms import decode_image
from avs_jax.errors import BadInputError, MissingInputError
from avs_jax.evaluation import external
from tfds_batvision import validate
from tfds_batvision.validate import BadFileError

PathOrArray = Union[str, os.PathLike, np.ndarray]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ECHO_SUFFIXES = (".wav", ".npy")
# soundfile reads these as float at full scale 1 (PCM: int / 2**(bits - 1)).
WAV_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
CHANNELS = 2  # [left, right]


class BadSampleError(BadInputError):
    """An input file (or array) of one sample that cannot be used; names it and the problem."""

    def __init__(self, where: str | os.PathLike, problem: str):
        self.path = os.fspath(where)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def is_path(x) -> bool:
    """Whether an input is given as a file (str or os.PathLike) rather than as an array."""
    return isinstance(x, (str, os.PathLike))


def _existing_file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingInputError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise BadSampleError(path, "is not a regular file")
    return path


EXIF_ORIENTATION = 0x0112


def _upright(data: bytes) -> bytes:
    """An encoded image as it is shown: one whose EXIF orientation turns it (a phone's portrait
    photo is stored sideways) re-encoded turned, as a lossless PNG; other images unchanged."""
    with PIL.Image.open(io.BytesIO(data)) as im:
        if im.getexif().get(EXIF_ORIENTATION, 1) in (1, None):
            return data
        turned = PIL.ImageOps.exif_transpose(im).convert("RGB")
    buf = io.BytesIO()
    turned.save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def read_image(image: PathOrArray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(float32 `[h, w, 3]` in [0, 1] resized bilinearly to `size` = (h, w), native (H0, W0)).

    `image`: a JPEG/PNG path (turned as its EXIF orientation says it is shown) or an
    `[H0, W0, 3]` uint8 / float-in-[0, 1] array.
    """
    if is_path(image):
        path = _existing_file(image)
        try:
            data, _ = validate.read_image_bytes(path)
        except BadFileError as e:
            raise BadSampleError(e.path, e.problem) from e
        return decode_image(_upright(data), size)
    arr = np.asarray(image)
    where = "image array"
    if arr.ndim != 3 or arr.shape[-1] != 3 or min(arr.shape[:2]) < 1:
        raise BadSampleError(where, f"shape {arr.shape}, expected [H, W, 3] RGB")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise BadSampleError(
                where, "float values outside [0, 1] (or NaN/inf); give [0, 1] or uint8 0-255"
            )
        arr = np.round(arr * 255.0).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise BadSampleError(where, f"dtype {arr.dtype}, expected uint8 or float in [0, 1]")
    # Through a lossless PNG (level 0: no compression work): the pixels then take the very
    # decode and resize of a training frame, whatever decode_image does.
    buf = io.BytesIO()
    PIL.Image.fromarray(arr).save(buf, format="PNG", compress_level=0)
    return decode_image(buf.getvalue(), size)


def check_echo(arr: np.ndarray, where: str) -> np.ndarray:
    """A `[2, T]` float recording at full scale 1 as float32; BadSampleError naming `where`."""
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise BadSampleError(
            where,
            f"dtype {arr.dtype}, expected float samples at full scale 1 (int32 PCM / 2**31)",
        )
    if arr.ndim != 2 or arr.shape[0] != CHANNELS:
        hint = (
            " (this looks like [T, 2]: transpose it)" if arr.ndim == 2 and arr.shape[1] == 2 else ""
        )
        raise BadSampleError(
            where, f"shape {arr.shape}, expected [2, T]: [left, right] channels first{hint}"
        )
    if arr.shape[1] == 0:
        raise BadSampleError(where, "the recording has no samples")
    n_bad = int((~np.isfinite(arr)).sum())
    if n_bad:
        raise BadSampleError(where, f"{n_bad} NaN/inf of its {arr.size} samples")
    peak = float(np.abs(arr).max())
    if peak > 1.0:
        # Training saw int32 PCM / 2**31; raw integer counts saved as float would be 2**31 louder.
        raise BadSampleError(
            where, f"samples reach {peak:.4g}; expected full scale 1 (e.g. int32 PCM / 2**31)"
        )
    return arr.astype(np.float32)


def _read_wav(path: str, sample_rate: int) -> np.ndarray:
    # libsndfile reads a truncated WAV as a shorter recording, without a word: check the chunks.
    with open(path, "rb") as f:
        data = f.read()
    try:
        validate.check_riff(path, data)
    except BadFileError as e:
        raise BadSampleError(e.path, e.problem) from e
    try:
        info = sf.info(path)
    except Exception as e:  # noqa: BLE001 - libsndfile's own text is the useful part
        raise BadSampleError(path, f"unreadable WAV ({e})") from e
    if info.format not in ("WAV", "WAVEX"):
        raise BadSampleError(path, f"{info.format} audio, expected a WAV file")
    if info.samplerate != sample_rate:
        raise BadSampleError(
            path,
            f"sample rate {info.samplerate} Hz, expected {sample_rate} (the run's; resample it)",
        )
    if info.channels != CHANNELS:
        raise BadSampleError(path, f"{info.channels} channel(s), expected 2 [left, right]")
    if info.subtype not in WAV_SUBTYPES:
        raise BadSampleError(
            path, f"sample format {info.subtype}, expected one of {', '.join(WAV_SUBTYPES)}"
        )
    if info.subtype == "PCM_32":  # BatVision's own format: the builder's reader, bit for bit
        try:
            return validate.read_bv2_wav(path)
        except BadFileError as e:
            raise BadSampleError(e.path, e.problem) from e
    try:
        pcm, _ = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise BadSampleError(path, f"unreadable WAV ({e})") from e
    return check_echo(pcm.T, path)


def read_echo(echo: PathOrArray, sample_rate: int) -> np.ndarray:
    """float32 `[2, T]` recording from a `.wav` / `.npy` path or a `[2, T]` float array."""
    if not is_path(echo):
        return check_echo(echo, "echo array")
    path = _existing_file(echo)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".wav":
        return _read_wav(path, sample_rate)
    if suffix != ".npy":
        raise BadSampleError(path, "expected a .wav or .npy echo recording")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise BadSampleError(path, f"not a readable .npy file ({e})") from e
    if not isinstance(arr, np.ndarray):
        raise BadSampleError(path, "not a single .npy array")
    return check_echo(arr, path)


def read_relative(relative: PathOrArray) -> np.ndarray:
    """float32 `[h, w]` relative depth or disparity from a `.npy` path or an array; a
    PredictionError (an InputError) naming it unless 2-D, finite and > 0 everywhere."""
    if is_path(relative):
        return external.read_prediction_file(_existing_file(relative))
    return external.check_prediction(relative, "relative array")
