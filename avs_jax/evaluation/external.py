"""Plug-and-play: relative predictions of any outside model, read from `.npy` files.

A folder holds one file per test sample id: `<dir>/<sample_id>.npy`, where a sample id with a
`/` (e.g. `Salle_Chevalier/3011`) is either a sub-folder path or written with `__` in its place
(`Salle_Chevalier__3011.npy`). Each file is a 2-D float array `[h, w]` (or `[h, w, 1]`, or
`[1, h, w]`) at any resolution; `kind` says whether it holds depth or disparity.
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
    """`[h, w]` float32 prediction of `sample_id`; PredictionError if missing or malformed."""
    path = prediction_path(folder, sample_id)
    if path is None:
        raise PredictionError(
            f"no prediction for sample {sample_id!r}: expected "
            f"{os.path.join(folder, sample_id.replace('/', '__') + '.npy')} (or "
            f"{os.path.join(folder, sample_id + '.npy')}); set --config.allow_missing=True to "
            "evaluate the others")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise PredictionError(f"{path}: not a readable .npy file ({e})") from e
    arr = np.squeeze(arr)
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise PredictionError(f"{path}: expected a 2-D depth/disparity map [h, w], got shape "
                              f"{np.load(path).shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise PredictionError(f"{path}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).any():
        raise PredictionError(f"{path}: holds no finite value")
    return arr


def resize_host(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Host-side bilinear (half-pixel) resize of a 2-D map, to stack files of any resolution."""
    from PIL import Image

    if x.shape == tuple(size):
        return x
    return np.asarray(Image.fromarray(x).resize((size[1], size[0]), Image.BILINEAR), np.float32)
