"""Decoding and augmentation of BatVision examples, as grain transforms.

`DecodeSample` / `DecodeTriple` turn a TFDS example into arrays (JPEG with Pillow, depth cap,
the echo moved to the canonical chirp onset, BatVision's echo STFT, resizes; for training with
``device_prep`` only up to the uint8 pixels (and the waveform), the rest running on the device:
`avs_jax/data/device_prep.py`, `avs_jax/data/device_triples.py`); `ZoeDepthAugment` and
`MonodepthAugment` are the papers' random augmentations for the host path
(`config.data.device_prep=False`; the colour jitter is `avs_jax/data/colour.py`); `PadBatch`,
`PaddedBatches` and `CachedMapDataset` serve evaluation and the decoded-example cache. Every
transform is a top-level class so that workers can pickle it.
"""

from __future__ import annotations

from typing import Any, Sequence

import grain
import numpy as np
import PIL.Image

from avs_jax.data import audio
from avs_jax.data.colour import color_jitter
from avs_jax.errors import BadInputError

# Shared with the builder: K under resizing, where each recording's chirp arrives, image decoding.
from tfds_batvision.intrinsics import relative_focal, resize_intrinsics
from tfds_batvision.onset import CANONICAL_ONSET, align_to_onset
from tfds_batvision.stored import decode_resized

# -- array helpers ---------------------------------------------------------------------------------


def cap_depth(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Depth [..] metres with invalid -> 0: non-finite, negative, and >= max_depth (valid = d > 0)."""
    d = np.asarray(depth, np.float32)
    bad = ~np.isfinite(d) | (d < 0) | (d >= max_depth)
    return np.where(bad, np.float32(0), d)


def resize_nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of [H, W, ...] to ``size``: every output is one of the inputs.

    Source index floor((i + 0.5) * in / out), i.e. the input pixel whose area holds the output
    pixel's centre (no blending of invalid zeros into valid depth, docs/reference.md).
    """
    h, w = size
    if x.shape[:2] == (h, w):
        return x  # stored at the training size: every output is its own input
    rows = np.minimum(((np.arange(h) + 0.5) * x.shape[0] / h).astype(np.int64), x.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * x.shape[1] / w).astype(np.int64), x.shape[1] - 1)
    return x[rows[:, None], cols[None, :]]


def decode_image_uint8(data, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """JPEG/PNG bytes, or uint8 pixels [H, W, 3] of a training-size dataset -> (uint8 [H, W, 3]
    at ``size``, native (H0, W0)). Bytes go through the builder's ``decode_resized`` (Pillow's
    reduced-size JPEG decode, then bilinear): stored pixels are exactly what this gives."""
    if not (isinstance(data, np.ndarray) and data.ndim == 3):
        return decode_resized(data, size)
    stored = tuple(data.shape[:2])
    if stored != tuple(size):
        raise BadInputError(
            f"the dataset stores images at {stored[0]}x{stored[1]} but config.data.image_size "
            f"is {size[0]}x{size[1]}: build the dataset at {size[0]}x{size[1]} (python -m "
            f"tfds_batvision.build --image_size={size[0]},{size[1]}) and set "
            f"config.data.stored_size={tuple(size)}, or set config.data.stored_size=() to read "
            "the full-resolution dataset"
        )
    return np.asarray(data, np.uint8), stored


def decode_image(data, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``decode_image_uint8`` as float32 [H, W, 3] in [0, 1] (and the native (H0, W0))."""
    pixels, native = decode_image_uint8(data, size)
    return pixels.astype(np.float32) * np.float32(1.0 / 255.0), native


def _rotate(x: np.ndarray, angle_deg: float, resample: int) -> np.ndarray:
    """Rotates [H, W] or [H, W, C] float32 about the centre, filling uncovered pixels with 0."""
    if x.ndim == 2:
        return np.asarray(PIL.Image.fromarray(x, mode="F").rotate(angle_deg, resample=resample))
    return np.stack(
        [_rotate(np.ascontiguousarray(x[..., c]), angle_deg, resample) for c in range(x.shape[-1])],
        axis=-1,
    )


# -- grain transforms (top level: picklable for worker processes) --------------------------------


class DecodeSample(grain.transforms.Map):
    """Record of bv1/bv2 -> {image, echo, depth} at ``image_size`` (+ depth_full, sample_id and
    focal, `relative_focal` of the camera, for eval).

    ``device_prep`` (training only): {image uint8, wave [2, L] float32, depth} instead, the echo
    STFT and the augmentation being left to the train step (`avs_jax/data/device_prep.py`). The
    waveform is onset-aligned, then cut or zero-padded to `audio.device_wave_length`;
    recordings used whole (no cut) also give their length, ``wave_length`` (int32).
    """

    def __init__(
        self,
        image_size,
        max_depth: float,
        stft: dict,
        eval_mode: bool = False,
        device_prep: bool = False,
    ):
        self.size = tuple(image_size)
        self.max_depth = float(max_depth)
        self.stft = dict(stft)
        self.eval_mode = eval_mode
        self.device_prep = device_prep and not eval_mode

    def map(self, ex: dict[str, Any]) -> dict[str, np.ndarray]:
        s = self.stft
        wave = _aligned_wave(ex, s)
        if self.device_prep:
            image, _ = decode_image_uint8(ex["image"], self.size)
            out = {"image": image, **_fixed_length(ex, wave, s, self.max_depth)}
        else:
            image, stored_hw = decode_image(ex["image"], self.size)
            cut = (s.get("max_depth") or self.max_depth) if s["cut_to_max_depth"] else None
            echo = audio.echo_features(
                wave, self.size, cut, s["n_fft"], s["win_length"], s["hop_length"], s["sample_rate"]
            )
            out = {"image": image, "echo": echo.astype(np.float32)}
        if self.eval_mode:
            out["depth_full"] = cap_depth(ex["depth"], self.max_depth)
            out["depth"] = resize_nearest(out["depth_full"], self.size)
            out["sample_id"] = _as_str(ex["sample_id"])
            # The focal length for `avs_jax.canonical_camera` (K is at the stored size).
            out["focal"] = np.float32(relative_focal(ex["intrinsics"], stored_hw))
        else:
            # Nearest resize only picks values, so capping after it is the same and 7x cheaper.
            out["depth"] = cap_depth(resize_nearest(ex["depth"], self.size), self.max_depth)
        return out


def _aligned_wave(ex: dict[str, Any], s: dict) -> np.ndarray:
    """The example's float32 [2, T] recording, moved to the canonical onset unless align='off'."""
    wave = np.asarray(ex["audio"], np.float32)
    if s.get("align", "onset") != "onset":
        return wave
    if "audio_onset" not in ex:
        raise BadInputError(
            f"example {_as_str(ex.get('sample_id', '?'))} has no audio_onset: the dataset "
            "was built before onset alignment; rebuild it (python -m tfds_batvision.build "
            "... --overwrite) or set config.data.stft.align='off'"
        )
    return align_to_onset(wave, int(ex["audio_onset"]), s.get("onset", CANONICAL_ONSET))


def _fixed_length(ex: dict[str, Any], wave: np.ndarray, s: dict, max_depth: float) -> dict:
    """{"wave": [2, L]} cut / zero-padded as `audio.batvision_echo_stft` cuts (+ its length)."""
    n = audio.device_wave_length(s, max_depth)
    if s["cut_to_max_depth"]:
        return {"wave": audio.cut_or_pad(wave, n)}
    if wave.shape[1] > n:
        raise BadInputError(
            f"example {_as_str(ex.get('sample_id', '?'))}: a {wave.shape[1]}-sample recording "
            f"(after onset alignment) is longer than config.data.stft.num_samples={n}, the room "
            "that recordings used whole (cut_to_max_depth=False) are padded to: raise it"
        )
    return {"wave": audio.cut_or_pad(wave, n), "wave_length": np.int32(wave.shape[1])}


class DecodeTriple(grain.transforms.Map):
    """Record of bv1_triples -> {frames, frames_aug, intrinsics, poses, has_pose} at ``image_size``.

    frames, frames_aug float32 [3, H, W, 3] in [0, 1] (t-20, t, t+20), intrinsics [3, 3] at
    (H, W), poses [3, 4, 4], has_pose bool (+ sample_id for eval). ``device_prep`` (training
    only, ignored with ``eval_mode``): frames uint8 [3, H, W, 3] and no frames_aug, the /255 and
    Monodepth2's augmentation being left to the train step (`avs_jax/data/device_triples.py`).
    """

    def __init__(self, image_size, eval_mode: bool = False, device_prep: bool = False):
        self.size = tuple(image_size)
        self.eval_mode = eval_mode
        self.device_prep = device_prep and not eval_mode

    def map(self, ex: dict[str, Any]) -> dict[str, np.ndarray]:
        images = ex["images"]
        if _stored_frames(images, self.size):  # pixels at the size already: no copy
            frames, native = images, self.size
        else:
            decoded = [decode_image_uint8(b, self.size) for b in images]
            frames, native = np.stack([d[0] for d in decoded]), decoded[0][1]
        if not self.device_prep:  # decode_image's float32: the same pixels times 1/255
            frames = frames.astype(np.float32) * np.float32(1.0 / 255.0)
        out = {
            "frames": frames,
            **({} if self.device_prep else {"frames_aug": frames}),
            "intrinsics": resize_intrinsics(ex["intrinsics"], native, self.size),
            "poses": np.asarray(ex["poses"], np.float32),
            "has_pose": np.asarray(ex["has_pose"], np.bool_),
        }
        if self.eval_mode:
            out["sample_id"] = _as_str(ex["sample_id"])
        return out


def _stored_frames(images, size: tuple[int, int]) -> bool:
    """Whether a triple's images are uint8 pixels [3, H, W, 3] stored at ``size`` (a training-size
    dataset); other stored sizes go through `decode_image_uint8`, which names the mismatch."""
    return (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 4
        and tuple(images.shape[1:3]) == tuple(size)
    )


class ZoeDepthAugment(grain.transforms.RandomMap):
    """Stage-1 augmentation (ZoeDepth): rotation, flip (swaps ears), gamma/brightness/colour."""

    def __init__(self, aug: dict):
        self.aug = dict(aug)

    def random_map(self, ex: dict[str, np.ndarray], rng: np.random.Generator):
        a = self.aug
        image, depth, echo = ex["image"], ex["depth"], ex["echo"]
        if rng.random() < a["flip_p"]:
            image, depth = image[:, ::-1], depth[:, ::-1]
            # Mirroring the scene puts the left ear's sound in the right ear.
            echo = echo[..., ::-1]
        angle = rng.uniform(-a["rotation_deg"], a["rotation_deg"])
        if a["rotation_deg"] > 0:
            image = _rotate(np.ascontiguousarray(image), angle, PIL.Image.BILINEAR)
            depth = _rotate(np.ascontiguousarray(depth), angle, PIL.Image.NEAREST)
        if rng.random() < a["color_p"]:
            gamma = rng.uniform(*a["gamma"])
            bright = rng.uniform(*a["brightness"])
            colour = rng.uniform(*a["colour"], size=3).astype(np.float32)
            image = np.clip(np.power(image, gamma) * bright * colour, 0, 1).astype(np.float32)
        return {
            **ex,
            "image": np.ascontiguousarray(image, np.float32),
            "depth": np.ascontiguousarray(depth),
            "echo": np.ascontiguousarray(echo),
        }


class MonodepthAugment(grain.transforms.RandomMap):
    """Triples augmentation (Monodepth2): colour jitter on frames_aug, one flip for all frames."""

    def __init__(self, aug: dict):
        self.aug = dict(aug)

    def random_map(self, ex: dict[str, np.ndarray], rng: np.random.Generator):
        a = self.aug
        frames, frames_aug = ex["frames"], ex["frames_aug"]
        k, poses = ex["intrinsics"], ex["poses"]
        if rng.random() < a["jitter_p"]:
            frames_aug = color_jitter(
                frames,
                rng.uniform(*a["jitter_brightness"]),
                rng.uniform(*a["jitter_contrast"]),
                rng.uniform(*a["jitter_saturation"]),
                rng.uniform(-a["jitter_hue"], a["jitter_hue"]),
                rng.permutation(4),
            )
        if rng.random() < a["flip_p"]:
            frames, frames_aug = frames[:, :, ::-1], frames_aug[:, :, ::-1]
            width = frames.shape[2]
            k = np.array(k, copy=True)
            k[0, 2] = width - 1 - k[0, 2]  # u -> W - 1 - u
            mirror = np.diag(np.array([-1, 1, 1, 1], np.float32))
            poses = mirror @ poses @ mirror  # the mirrored world's camera-to-world transforms
        return {
            **ex,
            "frames": np.ascontiguousarray(frames),
            "frames_aug": np.ascontiguousarray(frames_aug, np.float32),
            "intrinsics": k.astype(np.float32),
            "poses": poses.astype(np.float32),
        }


class PadBatch:
    """Stacks a list of examples into a batch of ``batch_size`` rows, zero-padding a short last one.

    Adds ``valid_example`` (bool [B]); padded sample ids are ''. Evaluation keeps every example.
    """

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def __call__(self, examples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        n = len(examples)
        out = {}
        for key in examples[0]:
            vals = np.stack([np.asarray(e[key]) for e in examples])
            if n < self.batch_size:
                pad = np.zeros((self.batch_size - n,) + vals.shape[1:], vals.dtype)
                vals = np.concatenate([vals, pad])
            out[key] = vals
        out["valid_example"] = np.arange(self.batch_size) < n
        return out


class PaddedBatches(grain.MapDataset):
    """``parent``'s batches, then all-padding batches (``valid_example`` False) up to ``length``.

    In a multi-host run every host must run as many validation steps as the others (each step is
    one computation over all hosts' devices), but striding a split of n examples over hosts leaves
    some hosts one example short, which can be one batch fewer: that host would stop while the
    others wait for it.
    """

    def __init__(self, parent: grain.MapDataset, length: int):
        super().__init__(parent)
        self._length = length
        self._padding = None  # built once, from the shapes of the first batch

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        if index < len(self._parent):
            return self._parent[index]
        if self._padding is None:  # PadBatch's padding rows, a whole batch of them
            self._padding = {k: np.zeros_like(v) for k, v in self._parent[0].items()}
            for value in self._padding.values():  # shared by every padding batch: read-only
                value.flags.writeable = False
        return self._padding

    def __str__(self) -> str:
        return f"PaddedBatches(parent={self._parent}, length={self._length})"


class CachedMapDataset(grain.MapDataset):
    """Keeps each element of ``parent`` after its first read: later epochs skip the decode.

    For datasets that fit in memory (the quickstart's: ~200 kB a decoded 64x128 sample); every
    process (and every ``mp_prefetch`` worker) holds its own copy of the elements it reads. The
    arrays are stored read-only, so a transform that wrote into its input in place would raise
    instead of changing what the next epoch sees. Deterministic transforms only (a Map, not a
    RandomMap): the cached element must be what a fresh read would give.
    """

    def __init__(self, parent: grain.MapDataset):
        super().__init__(parent)
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._parent)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        # grain's shuffle and repeat ask for index + epoch * len (sources read it modulo len).
        key = index % len(self._parent)
        if key not in self._cache:  # threads may race to fill a slot: both compute the same
            element = self._parent[key]
            for value in element.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
            self._cache[key] = element
        return self._cache[key]

    def __str__(self) -> str:
        return f"CachedMapDataset(parent={self._parent})"


def _as_str(x) -> str:
    return x.decode() if isinstance(x, (bytes, np.bytes_)) else str(x)
