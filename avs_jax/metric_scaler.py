"""`MetricScaler`: a stage-1 training run as a function of an image and its echo.

    scaler = avs_jax.MetricScaler.load("runs/avsnet")
    depth = scaler("room.jpg", "room.wav")  # metric depth M_p [H0, W0], the image's size
    metric = scaler.scale(relative, "room.jpg", "room.wav", kind="disparity")  # paper eq. 3

Inputs are prepared exactly as in training and evaluation (avs_jax/user_inputs.py for the
files): the image decoded and resized bilinearly to the run's input size; the echo moved to the
run's chirp onset (`config.data.stft.align`, docs/reference.md, "Echo onset alignment"), cut to
the round trip to the run's max depth, as the evaluation feeds every test set
(`avs_jax.evaluation.evaluate._stage1_predictor`), and turned into the STFT magnitude at the
image size (`avs_jax.data.audio.echo_features`). With the camera's intrinsics (`load(...,
intrinsics=)`), M_p × its focal length / training's (`avs_jax.canonical_camera`, docs/predict.md,
"Another camera"). The model's M_p (the run's resolution) is
resized bilinearly to the input image's size with `align_corners=True`, as the evaluation resizes
it to the ground truth (docs/reference.md, "Evaluation"). A relative prediction is resized to
that size (bilinear, half-pixel: the evaluation's external predictions) and scaled by
`avs_jax.scaling.apply_scaling` over every pixel where both maps are finite and > 0 (there is no
ground truth to choose the pixels).

Samples run in batches of `batch_size` (the last one zero-padded), through one jitted function:
`python -m avs_jax.predict` runs on this class, and gives the same numbers as the API built with
the same `batch_size` (docs/predict.md).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avs_jax import canonical_camera, user_inputs
from avs_jax.data import audio
from avs_jax.errors import BadInputError, MissingInputError
from avs_jax.evaluation import external
from avs_jax.evaluation.checkpoints import load_run
from avs_jax.metrics import resize_to
from avs_jax.scaling import (
    apply_scaling,
    masked_mean_std,
    masked_median,
    scale_factor_median,
    to_depth,
)
from tfds_batvision.onset import CANONICAL_ONSET, NoOnsetError, align_to_onset, detect_onset

KINDS = ("disparity", "depth")
METHODS = ("median", "mean_std")  # the paper's two ways of putting M_p's scale on R
MEAN_STD_EPS = 1e-8  # apply_scaling's default eps


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sample as the model reads it.

    image: float32 `[h, w, 3]` in [0, 1] at the run's image size; echo: float32 `[h, w, 2]`
    STFT magnitude, None for an Only-RGB run; size: (H0, W0) of the input image, the output's;
    relative: float32 `[h', w']` relative prediction (any resolution) or None; name: for errors.
    """

    image: np.ndarray
    echo: np.ndarray | None
    size: tuple[int, int]
    relative: np.ndarray | None = None
    name: str = ""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """depth: float32 `[H0, W0]` metric depth; median_mp: median of M_p at that size (over the
    scaling mask when scaled); scale_factor, shift: `depth = scale_factor * R + shift` (R as
    depth; shift 0 for "median"), None without a relative prediction."""

    depth: np.ndarray
    median_mp: float
    scale_factor: float | None = None
    shift: float | None = None


def stage1_stft(config: ml_collections.ConfigDict) -> dict:
    """The echo settings a stage-1 run is evaluated with: its training STFT, always cut to its
    max depth (as `evaluate._stage1_predictor`: the training cut of BV2 on every test set)."""
    stft = dict(config.data.stft)
    stft["cut_to_max_depth"] = True
    stft["max_depth"] = float(stft.get("max_depth") or config.data.max_depth)
    return stft


@functools.partial(jax.jit, static_argnames=("size", "kind", "method"))
def _finish(mp: jax.Array, rel: jax.Array | None, size: tuple[int, int], kind: str, method: str):
    """M_p `[h, w]` -> (metric depth `[H0, W0]`, median of M_p, factor, shift) at `size`."""
    m = resize_to(mp[None].astype(jnp.float32), size)
    ok_m = jnp.isfinite(m) & (m > 0)
    if rel is None:
        return m[0], masked_median(m, ok_m)[0], jnp.float32(1), jnp.float32(0)
    r = to_depth(rel[None].astype(jnp.float32), kind)
    mask = ok_m & jnp.isfinite(r) & (r > 0)
    depth = apply_scaling(rel[None], method, mask, m, kind)
    if method == "median":
        factor, shift = scale_factor_median(r, m, mask), jnp.zeros(1)
    else:  # apply_scaling's affine map, (r - mean_r) / (std_r + eps) * std_m + mean_m
        mean_r, std_r = masked_mean_std(r, mask)
        mean_m, std_m = masked_mean_std(m, mask)
        # An image without a usable pixel comes back unscaled from apply_scaling: factor 1.
        has = mask.any(axis=(1, 2))
        factor = jnp.where(has, std_m / (std_r + MEAN_STD_EPS), 1.0)
        shift = jnp.where(has, mean_m - factor * mean_r, 0.0)
    return depth[0], masked_median(m, mask)[0], factor[0], shift[0]


class _Predict:
    """`task.predict` as M_p `[B, h, w]`, equal (and hashed) by the task's model and variant: a
    second load of the same run (the API beside the command, a test) reuses the compiled
    forward of the first instead of compiling it again (~10 s for the tiny AVS-Net on 2 cores)."""

    def __init__(self, task: Any):
        self.task = task
        self.key = (task.model, task.uses_echo)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Predict) and self.key == other.key

    def __call__(self, variables: dict, image: jax.Array, echo: jax.Array | None) -> jax.Array:
        return self.task.predict(variables, image, echo)[..., 0].astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def _forward(predict: _Predict, variables: dict, image: jax.Array, echo: jax.Array | None):
    """The one jitted model call: M_p float32 `[B, h, w]` of images `[B, h, w, 3]` and echo
    inputs `[B, h, w, 2]` (None for Only-RGB)."""
    return predict(variables, image, echo)


class MetricScaler:
    """Metric depth from an image and its binaural echo, with the stage-1 model of a run.

    Args:
      task, variables, config: a stage-1 run as `avs_jax.evaluation.checkpoints.load_run`
        returns it (use `MetricScaler.load`).
      run_dir: where it came from, for error messages.
      batch_size: samples per model call; every call runs this batch shape (padded).
      focal_ratio: every M_p × this, the camera's focal length / training's (1: none).
    """

    def __init__(
        self,
        task: Any,
        variables: dict,
        config: ml_collections.ConfigDict,
        run_dir: str = "",
        batch_size: int = 1,
        focal_ratio: float = 1.0,
    ):
        if int(batch_size) < 1:
            raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
        if not float(focal_ratio) > 0:
            raise BadInputError(f"focal_ratio must be > 0, got {focal_ratio}")
        self.focal_ratio = np.float32(focal_ratio)
        self.task, self.variables, self.config = task, variables, config
        self.run_dir, self.batch_size = run_dir, int(batch_size)
        self.variant = str(config.model.variant)
        self.uses_echo = self.variant != "rgb"  # Only-RGB has no echo branch
        self.image_size = tuple(int(s) for s in config.data.image_size)
        self.max_depth = float(config.data.max_depth)
        self.stft = stage1_stft(config)
        self._predict = _Predict(task)

    @classmethod
    def load(
        cls,
        run_dir: str | os.PathLike,
        batch_size: int = 1,
        step: int | str | None = "best",
        intrinsics: str | os.PathLike | None = None,
        train_focal: float | None = None,
    ):
        """The scaler of a stage-1 training workdir (`runs/avsnet`): its best checkpoint (the
        latest if none was validated), or `step` (an int, None for the latest). Raises an
        InputError naming `run_dir` for a folder that is not a stage-1 run.

        intrinsics: the camera's intrinsics.json (fx, fy, cx, cy, width, height): M_p is then
        scaled by its focal length over training's, `train_focal` or the run's own (its
        camera.json, else its training split).
        """
        run_dir = os.fspath(run_dir)
        if not os.path.isdir(run_dir):
            raise MissingInputError(f"{run_dir}: no such folder (expected a stage-1 run)")
        task, variables, config = load_run(run_dir, "avsnet", step=step)
        ratio = 1.0
        if intrinsics is not None:
            if config.model.variant in canonical_camera.IMAGE_FREE_VARIANTS:
                raise BadInputError(
                    f"intrinsics: the {config.model.variant!r} model of {run_dir} does not read "
                    "the image, so its depth does not follow the camera; leave them out"
                )
            trained = train_focal or canonical_camera.run_focal(run_dir, config)
            ratio = canonical_camera.intrinsics_focal(os.fspath(intrinsics)) / trained
        return cls(task, variables, config, run_dir, batch_size, ratio)

    # -- inputs ----------------------------------------------------------------------------

    def echo_input(self, wave: np.ndarray, where: str = "echo array") -> np.ndarray:
        """float32 `[h, w, 2]` echo input of a `[2, T]` recording, prepared as in training."""
        s = self.stft
        if s.get("align", "onset") == "onset":
            try:
                onset = detect_onset(wave)
            except NoOnsetError as e:
                raise user_inputs.BadSampleError(
                    where, f"{e}: the echo cannot be placed in time"
                ) from e
            wave = align_to_onset(wave, onset, s.get("onset", CANONICAL_ONSET))
        echo = audio.echo_features(
            wave,
            self.image_size,
            s["max_depth"],
            s["n_fft"],
            s["win_length"],
            s["hop_length"],
            s["sample_rate"],
        )
        return echo.astype(np.float32)

    def prepare(
        self,
        image: user_inputs.PathOrArray,
        echo: user_inputs.PathOrArray | None = None,
        relative: user_inputs.PathOrArray | None = None,
        name: str = "",
    ) -> Sample:
        """Reads and checks one sample (see avs_jax/user_inputs.py for what each may be): image
        `[H0, W0, 3]` or a JPEG/PNG; echo `[2, T]` at 44.1 kHz or a WAV/.npy (unused by an
        Only-RGB run); relative `[h, w]` or a .npy. BadSampleError / PredictionError name the
        file that is wrong."""
        img, size = user_inputs.read_image(image, self.image_size)
        feats = None
        if self.uses_echo:
            if echo is None:
                raise BadInputError(
                    f"{name or 'sample'}: the {self.variant!r} model of {self.run_dir} needs an echo"
                )
            where = os.fspath(echo) if user_inputs.is_path(echo) else "echo array"
            feats = self.echo_input(user_inputs.read_echo(echo, self.stft["sample_rate"]), where)
        rel = None if relative is None else user_inputs.read_relative(relative)
        return Sample(img, feats, size, rel, name)

    # -- model -----------------------------------------------------------------------------

    def metric_depth(self, samples: Sequence[Sample]) -> np.ndarray:
        """M_p float32 `[N, h, w]` at the run's resolution, `batch_size` samples per call."""
        out = []
        for i in range(0, len(samples), self.batch_size):
            chunk = samples[i : i + self.batch_size]
            pad = self.batch_size - len(chunk)
            images = np.stack([s.image for s in chunk])
            images = np.pad(images, ((0, pad), (0, 0), (0, 0), (0, 0)))
            echoes = None
            if self.uses_echo:
                echoes = np.pad(
                    np.stack([s.echo for s in chunk]), ((0, pad), (0, 0), (0, 0), (0, 0))
                )
            mp = np.asarray(_forward(self._predict, self.variables, images, echoes))
            mp = mp[: len(chunk)] * self.focal_ratio
            for s, m in zip(chunk, mp):
                self._check(s, m)
            out.append(mp)
        return np.concatenate(out) if out else np.zeros((0,) + self.image_size, np.float32)

    def _check(self, sample: Sample, mp: np.ndarray) -> None:
        n_bad = int((~np.isfinite(mp) | (mp <= 0)).sum())
        if n_bad:
            raise BadInputError(
                f"model of {self.run_dir}, sample {sample.name or '?'}: {n_bad} NaN/inf/<= 0 of "
                f"its {mp.size} predicted depth values; was the checkpoint's training diverging?"
            )

    def run(
        self, samples: Sequence[Sample], kind: str = "disparity", method: str = "median"
    ) -> list[Prediction]:
        """One Prediction per sample: M_p at its image size, or its relative map scaled by it."""
        if kind not in KINDS:
            raise BadInputError(f"kind must be one of {KINDS}, got {kind!r}")
        if method not in METHODS:
            raise BadInputError(f"method must be one of {METHODS}, got {method!r}")
        preds = []
        for s, mp in zip(samples, self.metric_depth(samples)):
            rel = None
            if s.relative is not None:
                rel = external.resize_host(s.relative, s.size)
            depth, med, factor, shift = _finish(mp, rel, s.size, kind, method)
            scaled = rel is not None
            preds.append(
                Prediction(
                    np.asarray(depth, np.float32),
                    float(med),
                    float(factor) if scaled else None,
                    float(shift) if scaled else None,
                )
            )
        return preds

    # -- the short forms -------------------------------------------------------------------

    def __call__(
        self, image: user_inputs.PathOrArray, echo: user_inputs.PathOrArray | None = None
    ) -> np.ndarray:
        """Metric depth M_p float32 `[H0, W0]` of one image and its echo."""
        return self.run([self.prepare(image, echo)])[0].depth

    def scale(
        self,
        relative: user_inputs.PathOrArray,
        image: user_inputs.PathOrArray,
        echo: user_inputs.PathOrArray | None = None,
        kind: str = "disparity",
        method: str = "median",
    ) -> np.ndarray:
        """`relative` (`[h, w]` depth or disparity, `kind`) in metres, float32 `[H0, W0]`:
        scaled per image by M_p with `method` ("median", the paper's eq. 3, or "mean_std")."""
        return self.run([self.prepare(image, echo, relative)], kind, method)[0].depth

    def predict_batch(
        self,
        images: Sequence[user_inputs.PathOrArray],
        echoes: Sequence[user_inputs.PathOrArray | None] | None = None,
        relatives: Sequence[user_inputs.PathOrArray] | None = None,
        kind: str = "disparity",
        method: str = "median",
    ) -> list[np.ndarray]:
        """`__call__` (or `scale`, with `relatives`) of many samples: float32 `[H0_i, W0_i]`."""
        n = len(images)
        echoes = [None] * n if echoes is None else list(echoes)
        relatives = [None] * n if relatives is None else list(relatives)
        if len(echoes) != n or len(relatives) != n:
            raise BadInputError(
                f"{n} images, {len(echoes)} echoes and {len(relatives)} relative maps"
            )
        samples = [
            self.prepare(*x, name=str(i)) for i, x in enumerate(zip(images, echoes, relatives))
        ]
        return [p.depth for p in self.run(samples, kind, method)]
