"""The canonical camera: a stage-1 model's M_p on a camera other than training's, × f_test / f_train.

A metric depth model trained with one camera reads how large things look as how near they are.
Through a lens with a k× longer focal length the same room looks k× larger, so the model
predicts it k× nearer; scaling its prediction by f_test / f_train undoes that (Metric3D's
canonical camera transformation, Yin et al., ICCV 2023, Sec. 3.2). Off by default: the paper
tests BV2-trained models on BV1 as they are (Table 1, zero-shot). Measured on the simulator, the
RGB-Echoes model's BV1 M_p is short by about log(tan 50° / tan 42.5°), the log ratio of the two
nominal cameras' focal lengths (docs/quickstart.md, "The camera"). A model that does not read
the image (the echo-only variant) does not follow the camera and is left as it is.

A focal length here is a fraction of the image, `tfds_batvision.intrinsics.relative_focal`
(sqrt(fx / W · fy / H)): the ratio is then the same at whatever size the model reads images.
Each test sample's comes with its evaluation batch (`focal`, from the intrinsics the dataset
stores per sample), or for `avs_jax.predict` from an intrinsics.json. Training's is the median
over the run's training split, which stage-1 training records in `<workdir>/camera.json`
({"focal": f}); a run without that file has it read from its training split, or given.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import PIL.Image
from absl import logging

from avs_jax.data import datasets
from avs_jax.errors import BadInputError, InputError, MissingInputError
from tfds_batvision.intrinsics import relative_focal

# Training examples read for the training camera's focal length: one camera per location in
# BatVision, so a few hundred spread over the split see every location of a paper-scale split.
MAX_TRAIN_SAMPLES = 256
# Training focal lengths further apart than this (max / min) are logged: the median then stands
# for cameras the model saw alike.
SPREAD_WARNING = 1.01
RUN_FILE = "camera.json"  # in a stage-1 workdir: {"focal": training's focal length}
# Stage-1 variants whose depth does not read the image, so does not follow its camera.
IMAGE_FREE_VARIANTS = ("echoes",)
Array = jax.Array


def image_hw(image) -> tuple[int, int]:
    """(H, W) of a stored image: uint8 pixels [H, W, 3], or JPEG/PNG bytes (read from the header)."""
    if isinstance(image, np.ndarray) and image.ndim == 3:
        return int(image.shape[0]), int(image.shape[1])
    with PIL.Image.open(io.BytesIO(bytes(image))) as im:
        return im.size[1], im.size[0]


def training_focal(data: ml_collections.ConfigDict, run_dir: str) -> float:
    """The median focal length (`relative_focal`) of a stage-1 run's training split.

    data: the run's `config.data` (name, data_dir, stored_size of its training dataset).
    Reads up to MAX_TRAIN_SAMPLES examples spread evenly over the split. A dataset that is not
    built is an error, never built here (the run's manual_dir is not used).
    """
    data = ml_collections.ConfigDict(data.to_dict())
    data.manual_dir = ""
    try:
        builder = datasets.open_dataset(data)
    except datasets.DatasetNotFoundError as e:
        raise MissingInputError(
            f"canonical camera: {run_dir} trained on batvision/{data.name} in {data.data_dir}, "
            "which is not here to read its camera from; give its focal length as a fraction of "
            "the image, sqrt(fx/W * fy/H) (config.canonical_camera.train_focal, or --train_focal "
            f"of avs_jax.predict) ({e})"
        ) from e
    source = builder.as_data_source("train")
    n = len(source)
    if n == 0:
        raise BadInputError(f"canonical camera: batvision/{data.name} has no training examples")
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_TRAIN_SAMPLES)).round().astype(np.int64))
    focals = []
    for i in idx:
        ex = source[int(i)]
        f = relative_focal(ex["intrinsics"], image_hw(ex["image"]))
        if f <= 0:
            sid = ex["sample_id"]
            sid = sid.decode() if isinstance(sid, bytes) else str(sid)
            raise BadInputError(
                f"canonical camera: training example {sid!r} of batvision/{data.name} has no "
                f"focal length in its intrinsics {np.asarray(ex['intrinsics']).tolist()}"
            )
        focals.append(f)
    focals = np.asarray(focals)
    if focals.max() > SPREAD_WARNING * focals.min():
        logging.warning(
            "canonical camera: %s's training cameras have focal lengths %.4f-%.4f; using their "
            "median %.4f",
            run_dir,
            focals.min(),
            focals.max(),
            np.median(focals),
        )
    return float(np.median(focals))


def record_run_focal(workdir: str, data: ml_collections.ConfigDict) -> None:
    """Writes `workdir/camera.json` ({"focal": `training_focal`}) each time training starts or
    resumes, so that it describes the data the run trains on now. A training split whose
    cameras cannot be read leaves no file, with a warning: the file serves the canonical camera
    only, never training."""
    path = os.path.join(workdir, RUN_FILE)
    try:
        focal = training_focal(data, workdir)
    except InputError as e:
        logging.warning("canonical camera: %s not written: %s", path, e)
        if os.path.exists(path):
            os.remove(path)  # it described other data
        return
    os.makedirs(workdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"focal": focal}, f)
    os.replace(path + ".tmp", path)


def run_focal(run_dir: str, run_cfg: ml_collections.ConfigDict) -> float:
    """Training's focal length of a stage-1 run: its camera.json, else read from its training
    split (`training_focal`; a run trained before camera.json was written)."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.exists(path):
        return training_focal(run_cfg.data, run_dir)
    try:
        with open(path) as f:
            focal = float(json.load(f)["focal"])
    except Exception as e:
        raise BadInputError(f'{path}: expected {{"focal": a number > 0}} ({e!r})') from e
    if not focal > 0:
        raise BadInputError(f"{path}: focal {focal} must be > 0")
    return focal


def intrinsics_focal(path: str) -> float:
    """`relative_focal` of an intrinsics.json (the builder's format: fx, fy, cx, cy, width,
    height in pixels, docs/reference.md, "Camera intrinsics and poses")."""
    from tfds_batvision.batvision import read_intrinsics_file
    from tfds_batvision.validate import BadFileError

    if not os.path.isfile(path):
        raise MissingInputError(f"{path}: no such intrinsics file")
    try:
        k, hw = read_intrinsics_file(path)
    except BadFileError as e:
        raise BadInputError(str(e)) from e
    focal = relative_focal(k, hw)
    if not focal > 0:
        raise BadInputError(f"{path}: fx and fy must be > 0, got {k[0, 0]} and {k[1, 1]}")
    return focal


def train_focals(config: ml_collections.ConfigDict, loaded: dict) -> dict[str, float]:
    """{variant: its training camera's focal length} with `config.canonical_camera.enabled`,
    else {}. loaded: {variant: (task, variables, the run's config)} of the stage-1 runs of
    `config.stage1` evaluated."""
    camera = config.get("canonical_camera")
    if camera is None or not camera.enabled:
        return {}
    given = float(camera.get("train_focal") or 0.0)
    if given < 0:
        raise BadInputError(f"config.canonical_camera.train_focal={given} must be > 0 (or 0: read)")
    out = {}
    for variant, (_, _, run_cfg) in loaded.items():
        if variant in IMAGE_FREE_VARIANTS:
            continue
        out[variant] = given or run_focal(config.stage1[variant], run_cfg)
        logging.info("canonical camera: %s trained at focal length %.4f", variant, out[variant])
    return out


def factors(
    focal: np.ndarray,
    train_focal: float,
    example_mask: np.ndarray,
    sample_ids: Sequence[str],
) -> np.ndarray:
    """Per image f_test / f_train, float32 `[B]` (1 for padding rows).

    In float32, as the batches carry f_test: the same camera gives exactly 1. Raises
    BadInputError naming the first real example without a focal length (a dataset whose
    samples store no intrinsics).
    """
    focal = np.asarray(focal, np.float32)
    real = np.asarray(example_mask, bool)
    missing = np.flatnonzero(real & ~(focal > 0))
    if missing.size:
        raise BadInputError(
            f"canonical camera: sample {sample_ids[missing[0]]!r} has no focal length in its "
            "intrinsics"
        )
    return np.where(real, focal / np.float32(train_focal), np.float32(1.0)).astype(np.float32)


def apply(
    mp: dict[str, Array],
    train_focal: dict[str, float],
    focal: np.ndarray | None,
    example_mask: np.ndarray,
    sample_ids: Sequence[str],
) -> dict[str, Array]:
    """Each M_p `[B, h, w]` of `train_focal`'s variants × its `factors`; the rest as they are.

    focal: the batch's `[B]` test focal lengths (None: a batch without them, an error when a
    variant is to be scaled).
    """
    if not train_focal:
        return mp
    if focal is None:
        raise BadInputError("canonical camera: the evaluation batches carry no focal lengths")
    out = dict(mp)
    for variant, f in train_focal.items():
        k = factors(focal, f, example_mask, sample_ids)
        out[variant] = mp[variant] * jnp.asarray(k)[:, None, None]
    return out
