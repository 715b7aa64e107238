"""Plug-and-play: relative predictions of any outside model, read from `.npy` files.

A folder holds one file per test sample id: `<dir>/<sample_id>.npy`, where a sample id with a
`/` (e.g. `Salle_Chevalier/3011`) is either a sub-folder path or written with `__` in its place
(`Salle_Chevalier__3011.npy`). Each file is a 2-D float array `[h, w]` (or `[h, w, 1]`, or
`[1, h, w]`) at any resolution; `kind` says whether it holds depth or disparity.

Every value must be finite and > 0 (a depth or a disparity of that pixel): a file with a NaN,
an inf or a value <= 0 is a PredictionError naming the file and how many of each. Nothing is
masked or clamped: leaving such pixels out would score the model on pixels it chose, and a
clamped disparity (0 -> 1e-6) is a 1e6 m depth. An affine-invariant disparity (e.g. MiDaS's)
that reaches 0 or below must be shifted to positive values before it is saved.
"""

from __future__ import annotations

import os

import numpy as np

from avs_jax.errors import InputError


class PredictionError(InputError, ValueError):
    """A missing or malformed external prediction file; the message names it."""


def prediction_path(folder: str, sample_id: str) -> str | None:
    """The file of `sample_id` in `folder`, or None when there is none."""
    for name in (sample_id, sample_id.replace("/", "__")):
        path = os.path.join(folder, name + ".npy")
        if os.path.isfile(path):
            return path
    return None


def load_prediction(folder: str, sample_id: str) -> np.ndarray:
    """`[h, w]` float32 prediction of `sample_id`; PredictionError if missing or malformed, or
    if a value is NaN, inf or <= 0."""
    path = prediction_path(folder, sample_id)
    if path is None:
        raise PredictionError(
            f"no prediction for sample {sample_id!r}: expected "
            f"{os.path.join(folder, sample_id.replace('/', '__') + '.npy')} (or "
            f"{os.path.join(folder, sample_id + '.npy')}); set --config.allow_missing=True to "
            "evaluate the others"
        )
    return read_prediction_file(path)


def read_prediction_file(path: str) -> np.ndarray:
    """`[h, w]` float32 prediction read from the `.npy` file `path`; PredictionError if it is
    unreadable or malformed, or if a value is NaN, inf or <= 0."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise PredictionError(f"{path}: not a readable .npy file ({e})") from e
    return check_prediction(arr, path)


def check_prediction(arr: np.ndarray, where: str) -> np.ndarray:
    """`arr` as a `[h, w]` float32 map (`[h, w, 1]` and `[1, h, w]` squeezed); PredictionError
    naming `where` (its file) unless it is 2-D real numbers, finite and > 0 everywhere."""
    arr = np.asarray(arr)
    shape = arr.shape
    arr = np.squeeze(arr)
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise PredictionError(
            f"{where}: expected a 2-D depth/disparity map [h, w], got shape {shape}"
        )
    # Real numbers only: a complex map would lose its imaginary part silently in the cast.
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise PredictionError(f"{where}: expected real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range: inf, counted below
        arr = arr.astype(np.float32)
    counts = {
        "NaN": int(np.isnan(arr).sum()),
        "inf": int(np.isinf(arr).sum()),
        "<= 0": int((np.isfinite(arr) & (arr <= 0)).sum()),
    }
    bad = [f"{n} {what}" for what, n in counts.items() if n]
    if bad:
        raise PredictionError(
            f"{where}: {', '.join(bad)} of its {arr.size} values; a depth or "
            "disparity prediction must be finite and > 0 at every pixel"
        )
    return arr


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel bilinear taps along one axis: (first index, second index, second's weight)."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_host(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Host-side bilinear (half-pixel, borders clamped) resize of a 2-D map `[H, W]` to `size`,
    to stack files of any resolution: cv2.resize's INTER_LINEAR, which Monodepth2's evaluation
    resizes predictions with. Shrinking samples the map, with no anti-aliasing low-pass (PIL's
    BILINEAR has one when shrinking)."""
    x = np.asarray(x, np.float32)
    if x.shape == tuple(size):
        return x
    r0, r1, wr = _linear_taps(x.shape[0], size[0])
    c0, c1, wc = _linear_taps(x.shape[1], size[1])
    rows = x[r0] * (1 - wr)[:, None] + x[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


def load_batch(folder, ids, real, size, allow_missing, missing):
    """(predictions [B, *size] resized from each real sample's file, found [B]); a missing file
    is a PredictionError unless allow_missing, when its id is appended to `missing`."""
    preds = np.ones((len(ids),) + tuple(size), np.float32)
    ok = np.zeros(len(ids), bool)
    for i, (sid, r) in enumerate(zip(ids, real)):
        if not r:
            continue
        try:
            preds[i] = resize_host(load_prediction(folder, sid), size)
            ok[i] = True
        except PredictionError:
            if not allow_missing or prediction_path(folder, sid) is not None:
                raise
            missing.append(sid)
    return preds, ok
