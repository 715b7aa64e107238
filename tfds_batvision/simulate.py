r"""Physical room simulator that writes BatVision V1/V2 on-disk layouts.

See docs/reference.md, "Simulator layout".

Usage::

  python -m tfds_batvision.simulate --layout=bv2 --out=/tmp/bv2 --scenes=200 --seed=0 \
      --height=64 --width=128 --workers=2

One scene is one room (``tfds_batvision.sim.scene``): exact ray-cast z-depth, RGB shaded with
procedural world-space textures, and the binaural echo of the BatVision chirp through an
image-source room response (obstacles add first-order reflections only, see ``sim.acoustics``).
Splits are assigned per scene, so val/test rooms are never seen in training.

Files written (the real layouts of docs/reference.md, so a reader cannot tell them apart):

BV2 (``--layout=bv2``; one scene = one location folder ``sim_room_NNNN`` holding
``--frames_per_scene`` samples at independent random poses in that room)::

  <root>/<location>/{train,val,test}.csv   all three written; a scene's rows go to its split's CSV,
                                           the other two hold the header only
  <root>/<location>/audio/audio_<i>.wav    int32 PCM, 2 channels [left, right], 44100 Hz, 20000
                                           frames, the chirp arriving at sample 287
  <root>/<location>/camera/camera_<i>.jpeg RGB JPEG (Pillow, quality 90), --height x --width
  <root>/<location>/depth/depth_<i>.npy    uint16 millimetres [H, W], 0 = no return
  <root>/<location>/intrinsics.json        {"fx", "fy", "cx", "cy", "width", "height"}

  CSV header, byte for byte as the real sample (no spaces after commas):
  ``index,time,left audio time,right audio time,audio path,audio file name,camera time,camera path,
  camera file name,depth time,depth path,depth file name``; ``<kind> path`` is relative to the root
  with a trailing slash (``sim_room_0003/audio/``), so a file is
  ``join(root, row['audio path'], row['audio file name'])``. ``index`` = ``i`` counts the samples
  of the location from 0; times are synthesised as ``i * FRAME_PERIOD_S`` seconds.

BV1 (``--layout=bv1``; one scene = one moving sequence of ``--frames_per_scene`` frames; by default
one scene per session folder, a dated name ``YYYY.MM.DD`` = 2019-08-01 plus the session index in
days; ``--scenes_per_session=k`` puts k consecutive scenes in one session, separated by a time jump
of SCENE_GAP_S = 600 s, as real sessions hold several scenes)::

  <root>/{train,val,test}.csv                 columns: index,session,time,camera path left,
                                              depth path,audio path left,audio path right
                                              (paths relative to the root; rows time-ordered
                                              within a session, sessions in scene order)
  <root>/intrinsics.json                      {"fx", "fy", "cx", "cy", "width", "height"}
  <root>/<session>/camera/left/<stem>.png     RGB PNG (lossless, so frame warping is exact)
  <root>/<session>/depth/<stem>.npy           float32 millimetres [H, W]; holes: NaN at
                                              occlusion edges and in
                                              low-confidence blobs, +inf out of sensor range,
                                              0 for isolated speckle
  <root>/<session>/audio/raw_long/<stem>_left.npy, <stem>_right.npy
                                              float32 waveform [4180]: 980 near-silent
                                              samples, then the chirp and 3200 samples
                                              (72.5 ms) of echoes, as real raw_long files
  <root>/<session>/poses.json                 {stem: 4x4 camera-to-world (list of 4 lists)};
                                              poses of different scenes of one session are in
                                              unrelated world frames (different rooms)

  ``<stem>`` is a time stamp ``HHMMSS.ffffff`` synthesised from the frame index (10:00:00 plus
  ``slot * 600 s + frame * FRAME_PERIOD_S``, slot = the scene's place in its session), as the real
  ``180336.309017``; ``time`` is the same in seconds after midnight; ``index`` counts the frames of
  the session from 0 (continuous across its scenes; the scene change shows only in time). With
  ``--test_frame_stride=k`` a test sequence holds frames 0, k, 2k, ... with their own stems and
  indices, as a recording at 1/k of the frame rate.

Camera convention of the poses: x right, y down, z forward (OpenCV / Monodepth2), world z up;
``X_world = T_c2w @ X_cam``. Depth is z-depth along the optical axis. Pixel (u, v) integer centres,
``cx = (W - 1) / 2``.

Intrinsics are those of an ideal pinhole with the dataset's nominal horizontal field of view
(``tfds_batvision.intrinsics.NOMINAL_HFOV_DEG``: the builder's assumption when a real root has no
intrinsics.json; no calibration is published with the data) and square pixels at the written
resolution. ``--onset_jitter`` moves each recording's chirp arrival by a random number of samples
(docs/reference.md, "Echo onset alignment"). Audio amplitudes are in full-scale units for both
layouts: BV2 stores ``round(x * 2**31)`` as int32, BV1 stores ``x`` as float32; the direct path
peaks near 0.5 and the microphone noise has std 1e-3, like the real BV2 sample's noise floor.

Not confirmed against real BV1 files (the official loader only shows the four column names): the
other column names, the camera/depth sub-folder names, the image format and resolution (we use the
BV2 720x1280 default and PNG) and the exact length of the ``raw_long`` files (the original code
crops a 3200-sample window starting anywhere in 0-970, so they hold at least 4170).

Determinism: every random draw comes from ``np.random.default_rng([seed, scene, ...])``, time
stamps come from frame indices, and files are written in a fixed order, so the same flags give a
byte-identical tree whatever ``--workers`` is.

Bad settings and interrupted runs: every flag is checked before anything is written; an impossible
value stops the run with one line naming the flag and the value (``BadFlagError``, exit status 1).
The tree is written into ``<out>.incomplete/tree`` and renamed to ``<out>`` only once complete, so
an interrupted run (even ``kill -9``) leaves no ``<out>`` that a reader could take for a dataset.
Each finished scene is recorded in ``<out>.incomplete/done/``; rerunning the same command resumes:
complete scenes are kept, an interrupted one is redone, and the result is byte-identical to an
uninterrupted run. A leftover of a run with other settings (or another simulator version) is
deleted and the run starts clean. A non-empty ``<out>`` is refused as before unless
``--overwrite``, which replaces it only when the new tree is complete.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent import futures

import numpy as np
import soundfile as sf
import tqdm
from absl import logging
from PIL import Image

from tfds_batvision.intrinsics import NOMINAL_HFOV_DEG
from tfds_batvision.sim import acoustics, geometry, render
from tfds_batvision.sim import scene as scene_lib

SAMPLE_RATE = 44100
FRAME_PERIOD_S = 0.1  # synthetic time between frames (10 fps).
SESSION_START_S = 10 * 3600  # BV1 sessions start at 10:00:00.
SCENE_GAP_S = 600  # time jump between consecutive scenes of one BV1 session.
BV2_HEADER = (
    "index,time,left audio time,right audio time,audio path,audio file name,camera time,"
    "camera path,camera file name,depth time,depth path,depth file name"
)
BV1_COLUMNS = (
    "index",
    "session",
    "time",
    "camera path left",
    "depth path",
    "audio path left",
    "audio path right",
)
SPLITS = ("train", "val", "test")
JPEG_QUALITY = 90
STAGING_SUFFIX = ".incomplete"  # <out>.incomplete: the run in progress (module docstring).
DAY_S = 24 * 3600


class BadFlagError(ValueError):
    """An impossible simulator setting; the message names the flag and its value."""


class WorkerDiedError(RuntimeError):
    """A simulation worker process ended without its scene; the finished scenes are kept."""


@dataclasses.dataclass(frozen=True)
class LayoutSpec:
    """Per-layout defaults and file formats (docs/reference.md)."""

    name: str
    height: int
    width: int
    frames_per_scene: int
    min_room: float
    max_room: float
    audio_samples: int
    onset: int  # sample at which the chirp's direct path reaches the ears
    sequence: bool


LAYOUTS = {
    # BV2: 720x1280 JPEG, 20000-frame WAV with the chirp arriving at sample 287 (the real sample's
    # onset, tfds_batvision.onset), rooms up to ~30 m.
    "bv2": LayoutSpec("bv2", 720, 1280, 4, 3.0, 30.0, 20000, 287, sequence=False),
    # BV1: the real raw_long files start with ~970-980 near-silent samples (docs/reference.md,
    # "Echo onset alignment"): the chirp arrives at 980, followed by the 3200 samples (72.5 ms,
    # echoes up to ~11 m) that the original BatVision code crops. Sequences for triples
    # (t-20, t, t+20 needs at least 41 frames per session).
    "bv1": LayoutSpec("bv1", 720, 1280, 60, 3.0, 12.0, 980 + 3200, 980, sequence=True),
}


def scene_config(layout: str, **overrides) -> scene_lib.SceneConfig:
    """The SceneConfig of ``layout`` with its defaults, updated by non-None ``overrides``."""
    spec = LAYOUTS[layout]
    base = dict(
        height=spec.height,
        width=spec.width,
        frames_per_scene=spec.frames_per_scene,
        min_room=spec.min_room,
        max_room=spec.max_room,
        sequence=spec.sequence,
        hfov_deg=NOMINAL_HFOV_DEG[layout],
    )
    base.update({k: v for k, v in overrides.items() if v is not None})
    return scene_lib.SceneConfig(**base)


def assign_splits(num_scenes: int, fractions: Sequence[float], seed: int) -> list[str]:
    """Split name per scene: a seeded permutation cut by ``fractions`` (train, val, test).

    Every split with a positive fraction gets at least one scene when there are enough scenes.
    """
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        f = np.full(0, np.nan)
    if f.shape != (3,) or not np.all(np.isfinite(f)) or np.any(f < 0) or f.sum() <= 0:
        raise BadFlagError(
            "--split_fractions must be three finite non-negative numbers "
            f"(train,val,test) with a positive sum, got {list(fractions)}"
        )
    f = f / f.sum()
    counts = np.floor(f * num_scenes).astype(int)
    for i in np.argsort(-(f * num_scenes - counts), kind="stable")[: num_scenes - counts.sum()]:
        counts[i] += 1
    for i in (2, 1):  # held-out splits first: a tiny run still gets a test room.
        if f[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[i] += 1
            counts[0] -= 1
    order = np.random.default_rng([seed, 7]).permutation(num_scenes)
    out = [""] * num_scenes
    for name, idx in zip(SPLITS, np.split(order, np.cumsum(counts)[:-1])):
        for i in idx:
            out[int(i)] = name
    return out


def bv1_session_name(scene_index: int) -> str:
    """Dated session folder of a BV1 scene: 2019.08.01 plus ``scene_index`` days."""
    return (datetime.date(2019, 8, 1) + datetime.timedelta(days=scene_index)).strftime("%Y.%m.%d")


def bv1_time_us(slot: int, frame: int) -> int:
    """Synthetic time (microseconds after midnight) of ``frame`` of a session's ``slot``-th scene.

    10:00:00, plus SCENE_GAP_S per earlier scene in the session, plus FRAME_PERIOD_S per frame: a
    scene change inside a session shows as a time jump, as in the real recordings.
    """
    return (SESSION_START_S + slot * SCENE_GAP_S) * 10**6 + frame * int(
        round(FRAME_PERIOD_S * 10**6)
    )


def bv1_stem(time_us: int) -> str:
    """Time-stamp file stem ``HHMMSS.ffffff`` (as the real ``180336.309017``) of a time of day."""
    s, us = divmod(time_us, 10**6)
    return f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}.{us:06d}"


def bv2_location_name(scene_index: int) -> str:
    return f"sim_room_{scene_index:04d}"


def _write_json(path: str, obj, indent: int | None = 1) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=True)
        f.write("\n")


def _write_json_atomic(path: str, obj) -> None:
    """Writes ``path`` whole or not at all (temporary name, then rename)."""
    _write_json(path + ".tmp", obj)
    os.replace(path + ".tmp", path)


def _to_int32_pcm(x: np.ndarray) -> np.ndarray:
    """Float full-scale [..] -> int32 PCM (x * 2**31, clipped); the reader divides by 2**31."""
    return np.clip(np.round(x * 2.0**31), -(2**31), 2**31 - 1).astype(np.int32)


def _write_wav(path: str, audio: np.ndarray) -> None:
    """[2, T] float -> WAV int32 PCM, 2 channels, 44100 Hz."""
    sf.write(path, _to_int32_pcm(audio).T, SAMPLE_RATE, subtype="PCM_32", format="WAV")


def _write_image(path: str, rgb: np.ndarray, fmt: str) -> None:
    buf = io.BytesIO()
    img = Image.fromarray(render.to_uint8(rgb))
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buf, format="PNG")
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _chirp_start(
    spec: LayoutSpec, cfg: scene_lib.SceneConfig, seed: int, scene: int, frame: int
) -> int:
    """Emission sample of one recording: its chirp reaches the ears at the layout's onset, moved
    by up to +-``cfg.onset_jitter`` samples (uniform), minus the speaker-to-ear delay.

    The jitter has its own random stream, so that the rest of a frame is the same with and
    without it.
    """
    onset = spec.onset
    if cfg.onset_jitter:
        rng = np.random.default_rng([seed, scene, frame, 1])
        onset += int(rng.integers(-cfg.onset_jitter, cfg.onset_jitter + 1))
    return onset - acoustics.DIRECT_PATH_SAMPLES


def _simulate_bv2_scene(
    out_dir: str, index: int, split: str, cfg: scene_lib.SceneConfig, seed: int
) -> None:
    spec = LAYOUTS["bv2"]
    scene = scene_lib.sample_scene(np.random.default_rng([seed, index]), cfg)
    loc = bv2_location_name(index)
    root = os.path.join(out_dir, loc)
    for sub in ("audio", "camera", "depth"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rows = []
    for i in range(cfg.frames_per_scene):
        rng = np.random.default_rng([seed, index, i])
        rgb, _, hits = scene_lib.render_frame(scene, i, cfg.supersample)
        holes = scene_lib.sensor_holes(hits, cfg.sensor_min_range, cfg.sensor_max_range, rng)
        depth_mm = np.clip(np.round(hits.depth * 1000.0), 0, np.iinfo(np.uint16).max).astype(
            np.uint16
        )
        depth_mm[np.any(list(holes.values()), axis=0)] = 0
        audio = scene_lib.record_echo(
            scene, i, cfg, spec.audio_samples, _chirp_start(spec, cfg, seed, index, i), rng
        )
        _write_wav(os.path.join(root, "audio", f"audio_{i}.wav"), audio)
        _write_image(os.path.join(root, "camera", f"camera_{i}.jpeg"), rgb, "JPEG")
        np.save(os.path.join(root, "depth", f"depth_{i}.npy"), depth_mm)
        t = repr(round(i * FRAME_PERIOD_S, 6))
        rows.append(
            [
                str(i),
                t,
                t,
                t,
                f"{loc}/audio/",
                f"audio_{i}.wav",
                t,
                f"{loc}/camera/",
                f"camera_{i}.jpeg",
                t,
                f"{loc}/depth/",
                f"depth_{i}.npy",
            ]
        )
    for name in SPLITS:
        with open(os.path.join(root, f"{name}.csv"), "w", newline="") as f:
            f.write(BV2_HEADER + "\n")
            if name == split:
                csv.writer(f, lineterminator="\n").writerows(rows)
    _write_json(os.path.join(root, "intrinsics.json"), scene.intrinsics.as_dict())


def _simulate_bv1_scene(
    out_dir: str,
    index: int,
    cfg: scene_lib.SceneConfig,
    seed: int,
    scenes_per_session: int,
    frame_stride: int = 1,
) -> tuple[list[list[str]], dict]:
    spec = LAYOUTS["bv1"]
    scene = scene_lib.sample_scene(np.random.default_rng([seed, index]), cfg)
    session = bv1_session_name(index // scenes_per_session)
    slot = index % scenes_per_session
    root = os.path.join(out_dir, session)
    dirs = {"camera": "camera/left", "depth": "depth", "audio": "audio/raw_long"}
    for sub in dirs.values():
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rows, poses = [], {}
    # Frame i's draws depend on (seed, index, i) only: a stride keeps those frames exactly.
    for i in range(0, cfg.frames_per_scene, frame_stride):
        rng = np.random.default_rng([seed, index, i])
        time_us = bv1_time_us(slot, i)
        stem = bv1_stem(time_us)
        rgb, _, hits = scene_lib.render_frame(scene, i, cfg.supersample)
        holes = scene_lib.sensor_holes(hits, cfg.sensor_min_range, cfg.sensor_max_range, rng)
        depth_mm = (hits.depth * 1000.0).astype(np.float32)
        # BV1 depth marks missing returns in several ways (docs/reference.md): exercise each.
        depth_mm[holes["speckle"]] = 0.0
        depth_mm[holes["range"]] = np.inf
        depth_mm[holes["edge"] | holes["blob"]] = np.nan
        audio = scene_lib.record_echo(
            scene, i, cfg, spec.audio_samples, _chirp_start(spec, cfg, seed, index, i), rng
        )
        cam = f"{session}/{dirs['camera']}/{stem}.png"
        dep = f"{session}/{dirs['depth']}/{stem}.npy"
        left = f"{session}/{dirs['audio']}/{stem}_left.npy"
        right = f"{session}/{dirs['audio']}/{stem}_right.npy"
        _write_image(os.path.join(out_dir, cam), rgb, "PNG")
        np.save(os.path.join(out_dir, dep), depth_mm)
        np.save(os.path.join(out_dir, left), audio[0].astype(np.float32))
        np.save(os.path.join(out_dir, right), audio[1].astype(np.float32))
        poses[stem] = scene.poses[i].tolist()
        rows.append(
            [
                str(slot * cfg.frames_per_scene + i),
                session,
                repr(time_us / 10**6),
                cam,
                dep,
                left,
                right,
            ]
        )
    return rows, poses


def _done_path(done_dir: str, index: int) -> str:
    return os.path.join(done_dir, f"scene_{index:06d}.json")


def _scene_task(args) -> tuple[int, tuple[list[list[str]], dict] | None]:
    """Simulates one scene into the staging tree, then records it as done (with its BV1 rows)."""
    layout, out_dir, done_dir, index, split, cfg, seed, scenes_per_session, stride = args
    if layout == "bv2":
        _simulate_bv2_scene(out_dir, index, split, cfg, seed)
        result = None
    else:
        stride = stride if split == "test" else 1
        result = _simulate_bv1_scene(out_dir, index, cfg, seed, scenes_per_session, stride)
    _write_json_atomic(_done_path(done_dir, index), result)
    return index, result


def _load_done(done_dir: str, index: int) -> tuple[list[list[str]], dict] | None:
    """The result that ``_scene_task`` recorded for a complete scene (JSON keeps floats exact)."""
    with open(_done_path(done_dir, index)) as f:
        result = json.load(f)
    return None if result is None else (result[0], result[1])


def _code_digest() -> str:
    """Digest of the simulator's source: a resumed run must not mix scenes of two versions."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join(here, "sim", "*.py")))
    for path in [os.path.join(here, "simulate.py")] + sources:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _check(flag: str, value, ok: bool, want: str) -> None:
    if not ok:
        raise BadFlagError(f"--{flag} must be {want}, got {value}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, bool)
        and math.isfinite(v)
    )


def check_settings(
    layout: str,
    num_scenes: int,
    seed: int,
    cfg: scene_lib.SceneConfig,
    workers: int,
    scenes_per_session: int,
    test_frame_stride: int = 1,
) -> None:
    """Raises BadFlagError naming the first impossible setting (flag and value); writes nothing."""
    if layout not in LAYOUTS:
        raise BadFlagError(f"--layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    _check("scenes", num_scenes, _is_int(num_scenes) and num_scenes >= 1, "an integer >= 1")
    _check("seed", seed, _is_int(seed) and seed >= 0, "an integer >= 0")
    for name, low in (
        ("height", 1),
        ("width", 1),
        ("frames_per_scene", 1),
        ("supersample", 1),
        ("max_order", 0),
        ("max_obstacles", 0),
    ):
        value = getattr(cfg, name)
        _check(name, value, _is_int(value) and value >= low, f"an integer >= {low}")
    _check("workers", workers, _is_int(workers) and workers >= 1, "an integer >= 1")
    _check(
        "scenes_per_session",
        scenes_per_session,
        _is_int(scenes_per_session) and scenes_per_session >= 1,
        "an integer >= 1",
    )
    _check(
        "test_frame_stride",
        test_frame_stride,
        _is_int(test_frame_stride) and 1 <= test_frame_stride <= cfg.frames_per_scene,
        f"an integer in [1, --frames_per_scene {cfg.frames_per_scene}]",
    )
    if layout == "bv2" and test_frame_stride != 1:
        raise BadFlagError(
            "--test_frame_stride is for bv1 sequences: BV2's views of a room are independent "
            "(use --frames_per_scene)"
        )
    for name in ("min_room", "max_room"):
        value = getattr(cfg, name)
        _check(name, value, _is_number(value) and value > 0, "a finite number > 0 (metres)")
    if cfg.min_canonical_room is not None:
        value = cfg.min_canonical_room
        _check(
            "min_canonical_room",
            value,
            _is_number(value) and 0 < value <= cfg.max_room,
            f"a finite number in (0, --max_room {cfg.max_room}] (metres)",
        )
        if not cfg.global_scale:
            raise BadFlagError(
                "--min_canonical_room shapes the room before --global_scale scales it; "
                "without --global_scale the room as drawn is its size (use --min_room)"
            )
    for name in ("step_m", "max_turn_deg"):
        value = getattr(cfg, name)
        _check(name, value, _is_number(value) and value >= 0, "a finite number >= 0")
    _check(
        "window_prob",
        cfg.window_prob,
        _is_number(cfg.window_prob) and 0.0 <= cfg.window_prob <= 1.0,
        "in [0, 1]",
    )
    _check(
        "onset_jitter",
        cfg.onset_jitter,
        _is_int(cfg.onset_jitter)
        and 0 <= cfg.onset_jitter <= LAYOUTS[layout].onset - acoustics.DIRECT_PATH_SAMPLES,
        f"an integer in [0, {LAYOUTS[layout].onset - acoustics.DIRECT_PATH_SAMPLES}] (samples; "
        f"the {layout} chirp arrives at sample {LAYOUTS[layout].onset})",
    )
    if cfg.hfov_range_deg is not None:
        if layout == "bv1":
            raise BadFlagError(
                "--hfov_range_deg is for bv2 only: a BV1 root has one intrinsics.json for all "
                "its sessions"
            )
        r = cfg.hfov_range_deg
        _check(
            "hfov_range_deg",
            r,
            len(r) == 2 and all(map(_is_number, r)) and 0 < r[0] <= r[1] < 180,
            "two numbers (lo, hi) with 0 < lo <= hi < 180 (degrees)",
        )
    if cfg.min_room > cfg.max_room:
        raise BadFlagError(f"--min_room {cfg.min_room} is larger than --max_room {cfg.max_room}")
    if not cfg.global_scale and cfg.max_room < scene_lib.MIN_ROOM_M:
        raise BadFlagError(
            f"--max_room {cfg.max_room} is below the smallest room the rig fits in, "
            f"{scene_lib.MIN_ROOM_M} m, without --global_scale"
        )
    if layout == "bv1" and cfg.frames_per_scene * FRAME_PERIOD_S >= SCENE_GAP_S:
        raise BadFlagError(
            f"--frames_per_scene {cfg.frames_per_scene} overruns the {SCENE_GAP_S} s "
            "time gap between scenes of a session"
        )
    # A session's last scene starts at slot min(scenes_per_session, num_scenes) - 1.
    if layout == "bv1" and bv1_time_us(min(scenes_per_session, num_scenes), 0) > DAY_S * 10**6:
        most = (DAY_S - SESSION_START_S) // SCENE_GAP_S
        raise BadFlagError(
            f"--scenes_per_session {scenes_per_session} runs a session's time stamps "
            f"past midnight: at most {most} scenes of {SCENE_GAP_S} s fit after "
            f"{SESSION_START_S // 3600}:00"
        )


def _open_staging(staging: str, settings: dict) -> set[int]:
    """Indices of the scenes complete in ``staging`` when it holds a run of ``settings``.

    Anything else there (another run's settings, a half-created folder) is deleted first.
    """
    tree, done = os.path.join(staging, "tree"), os.path.join(staging, "done")
    run_file = os.path.join(staging, "run.json")
    if os.path.lexists(staging):
        try:
            with open(run_file) as f:
                same = json.load(f) == settings
        except (OSError, ValueError):
            same = False
        if same and os.path.isdir(tree) and os.path.isdir(done):
            return {
                int(n[len("scene_") : -len(".json")])
                for n in os.listdir(done)
                if n.startswith("scene_") and n.endswith(".json")
            }
        logging.warning(
            "Deleting %s: an interrupted run with other settings (or of another "
            "simulator version), or a half-created one.",
            staging,
        )
        if os.path.isdir(staging) and not os.path.islink(staging):
            shutil.rmtree(staging)
        else:
            os.remove(staging)
    os.makedirs(tree)
    os.makedirs(done)
    _write_json_atomic(run_file, settings)
    return set()


def _publish(staging: str, out_dir: str) -> None:
    """Renames the complete tree to ``out_dir`` (replacing what is there), then drops staging."""
    if os.path.isdir(out_dir):
        if os.listdir(out_dir):  # only with overwrite: checked before the run
            os.rename(out_dir, os.path.join(staging, "old"))
        else:
            os.rmdir(out_dir)
    os.rename(os.path.join(staging, "tree"), out_dir)
    shutil.rmtree(staging)


def simulate_dataset(
    layout: str,
    out_dir: str,
    num_scenes: int,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    frames_per_scene: int | None = None,
    *,
    min_room: float | None = None,
    max_room: float | None = None,
    min_canonical_room: float | None = None,
    global_scale: bool = True,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    workers: int = 1,
    max_order: int | None = None,
    max_obstacles: int | None = None,
    scenes_per_session: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    supersample: int | None = None,
    step_m: float | None = None,
    max_turn_deg: float | None = None,
    window_prob: float | None = None,
    onset_jitter: int | None = None,
    hfov_range_deg: tuple[float, float] | None = None,
    test_frame_stride: int = 1,
) -> str:
    """Simulate ``num_scenes`` rooms into a BatVision ``layout`` ('bv1' or 'bv2') root; returns it.

    Unset (None) sizes take the layout's real defaults (``LAYOUTS``). ``out_dir`` must be absent or
    empty unless ``overwrite``, which replaces it once the new tree is complete (a stale tree would
    not be byte-reproducible). The tree is written in ``<out_dir>.incomplete`` and renamed at the
    end; a rerun after an interruption resumes there (module docstring). Impossible settings raise
    ``BadFlagError`` before anything is written.
    ``scenes_per_session`` (BV1 only) puts that many consecutive scenes in one dated session folder,
    separated by a time jump of SCENE_GAP_S, like real sessions that hold several scenes.
    ``supersample`` averages that many sub-pixel rays per pixel side for the RGB (default 1; see
    ``SceneConfig.supersample``: small images alias without it). ``step_m`` and ``max_turn_deg``
    (BV1 sequences) set the rig's motion per frame, ``SceneConfig``'s defaults when None.
    ``min_canonical_room`` (with ``global_scale``) draws the room's shape from floor sizes down to
    it before the scale puts its size in [min_room, max_room] (``SceneConfig.min_canonical_room``;
    default None: shapes drawn from the size range).
    ``window_prob`` is each wall's chance of a window onto the outdoors (default 0: none).
    ``onset_jitter`` moves each recording's chirp arrival by up to that many samples either way
    (default 0: every recording at the layout's onset, ``LAYOUTS``).
    ``hfov_range_deg`` (lo, hi) draws each scene's horizontal field of view from that range instead
    of the layout's nominal one (default None: the nominal, ``NOMINAL_HFOV_DEG``).
    ``test_frame_stride`` (BV1) keeps every k-th frame of each test sequence: the rig moves 2 cm
    per frame, so neighbours are near-duplicates and a test set's information is in its rooms
    (the same rooms and walks as with 1; time stamps and ``index`` those of the full sequence).
    ``workers`` > 1 runs scenes in that many processes, started with "spawn" once JAX is imported
    (fork is unsafe then), which re-imports the calling script: a script must call this under
    ``if __name__ == "__main__":``. A worker that dies (that re-import failing, or the process
    killed) raises ``WorkerDiedError`` instead of being replaced forever.
    """
    if layout not in LAYOUTS:
        raise BadFlagError(f"--layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    cfg = scene_config(
        layout,
        height=height,
        width=width,
        frames_per_scene=frames_per_scene,
        min_room=min_room,
        max_room=max_room,
        min_canonical_room=min_canonical_room,
        global_scale=global_scale,
        max_order=max_order,
        max_obstacles=max_obstacles,
        supersample=supersample,
        step_m=step_m,
        max_turn_deg=max_turn_deg,
        window_prob=window_prob,
        onset_jitter=onset_jitter,
        hfov_range_deg=None if hfov_range_deg is None else tuple(hfov_range_deg),
    )
    check_settings(layout, num_scenes, seed, cfg, workers, scenes_per_session, test_frame_stride)
    splits = assign_splits(num_scenes, split_fractions, seed)
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise BadFlagError(f"--out {out_dir} exists and is not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(
            f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    staging = os.path.normpath(os.path.abspath(out_dir)) + STAGING_SUFFIX
    # What the tree depends on (not workers), as JSON gives it back; numpy scalars as Python's.
    settings = json.loads(
        json.dumps(
            {
                "layout": layout,
                "num_scenes": num_scenes,
                "seed": seed,
                "cfg": dataclasses.asdict(cfg),
                "split_fractions": [float(x) for x in split_fractions],
                "scenes_per_session": scenes_per_session,
                "test_frame_stride": test_frame_stride,
                "code": _code_digest(),
            },
            default=lambda x: x.item(),
        )
    )
    done = _open_staging(staging, settings)
    if done:
        logging.warning(
            "Resuming the interrupted run in %s: %d of %d scenes are complete.",
            staging,
            len(done),
            num_scenes,
        )
    tree, done_dir = os.path.join(staging, "tree"), os.path.join(staging, "done")
    tasks = [
        (layout, tree, done_dir, i, splits[i], cfg, seed, scenes_per_session, test_frame_stride)
        for i in range(num_scenes)
        if i not in done
    ]
    results = {i: _load_done(done_dir, i) for i in done}
    bar = tqdm.tqdm(
        total=num_scenes,
        initial=len(done),
        desc=f"simulate {layout}",
        unit="scene",
        disable=not progress,
    )
    if workers > 1 and len(tasks) > 1:
        # fork is fast, but unsafe once JAX (threads) is loaded in this process; then spawn.
        method = "spawn" if "jax" in sys.modules else "fork"
        # An executor, not multiprocessing.Pool: a Pool replaces a dead worker and waits forever
        # for its task; the executor raises BrokenProcessPool.
        pool = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
        try:
            for done_task in futures.as_completed([pool.submit(_scene_task, t) for t in tasks]):
                index, rows = done_task.result()
                results[index] = rows
                bar.update()
        except futures.process.BrokenProcessPool as e:
            bar.close()
            raise WorkerDiedError(
                f"a simulation worker process died after {len(results)} of {num_scenes} scenes "
                f"(kept in {staging}: a rerun resumes there). Workers start with {method!r}"
                + (
                    ", which re-imports the calling script: call the simulator under "
                    '`if __name__ == "__main__":`, or with workers=1'
                    if method == "spawn"
                    else ""
                )
                + "; a worker killed for memory ends the same way."
            ) from e
        finally:  # on an interrupt too: the queued scenes are dropped, not run first.
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        for task in tasks:
            index, rows = _scene_task(task)
            results[index] = rows
            bar.update()
    bar.close()
    if layout == "bv1":
        for name in SPLITS:
            with open(os.path.join(tree, f"{name}.csv"), "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(BV1_COLUMNS)
                for i in range(num_scenes):  # scene order = session, then time order
                    if splits[i] == name:
                        w.writerows(results[i][0])
        sessions: dict[str, dict] = {}
        for i in range(num_scenes):
            sessions.setdefault(bv1_session_name(i // scenes_per_session), {}).update(results[i][1])
        for session, poses in sessions.items():
            _write_json(os.path.join(tree, session, "poses.json"), poses, indent=None)
        intr = geometry.Intrinsics.from_fov(cfg.height, cfg.width, cfg.hfov_deg)
        _write_json(os.path.join(tree, "intrinsics.json"), intr.as_dict())
    _publish(staging, out_dir)
    return out_dir


def load_bv1_geometry(root: str, session: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """True intrinsics K [3, 3] and camera-to-world poses {stem: [4, 4]} of a simulated BV1 session.

    Convention: camera x right, y down, z forward; world z up (module docstring).
    """
    with open(os.path.join(root, "intrinsics.json")) as f:
        intr = json.load(f)
    k = np.array([[intr["fx"], 0.0, intr["cx"]], [0.0, intr["fy"], intr["cy"]], [0.0, 0.0, 1.0]])
    with open(os.path.join(root, session, "poses.json")) as f:
        poses = {stem: np.asarray(p, dtype=np.float64) for stem, p in json.load(f).items()}
    return k, poses


def main(argv: Sequence[str]) -> None:
    del argv
    from absl import flags  # pylint: disable=g-import-not-at-top

    f = flags.FLAGS
    try:
        try:
            fractions = [float(x) for x in f.split_fractions]
        except ValueError:
            fractions = f.split_fractions  # assign_splits names the flag and the value
        out = simulate_dataset(
            f.layout,
            f.out,
            f.scenes,
            f.seed,
            height=f.height,
            width=f.width,
            frames_per_scene=f.frames_per_scene,
            min_room=f.min_room,
            max_room=f.max_room,
            min_canonical_room=f.min_canonical_room,
            global_scale=f.global_scale,
            split_fractions=fractions,
            workers=f.workers,
            max_order=f.max_order,
            max_obstacles=f.max_obstacles,
            scenes_per_session=f.scenes_per_session,
            overwrite=f.overwrite,
            supersample=f.supersample,
            step_m=f.step_m,
            max_turn_deg=f.max_turn_deg,
            window_prob=f.window_prob,
            onset_jitter=f.onset_jitter,
            hfov_range_deg=_hfov_range(f.hfov_range_deg),
            test_frame_stride=f.test_frame_stride,
        )
    except (BadFlagError, FileExistsError) as e:
        sys.exit(f"tfds_batvision.simulate: {e}")
    print(f"wrote {f.scenes} {f.layout} scenes to {out}")


def _hfov_range(values: list[str] | None) -> tuple[float, float] | None:
    """--hfov_range_deg's "lo,hi" as numbers; anything else raises BadFlagError naming it."""
    if values is None:
        return None
    try:
        lo, hi = (float(v) for v in values)
    except ValueError:
        raise BadFlagError(f"--hfov_range_deg must be two numbers lo,hi (degrees), got {values}")
    return lo, hi


def _define_flags() -> None:
    from absl import flags  # pylint: disable=g-import-not-at-top

    flags.DEFINE_enum("layout", "bv2", sorted(LAYOUTS), "Which BatVision layout to write.")
    flags.DEFINE_string(
        "out",
        None,
        "Output root (absent or empty); written via "
        "<out>.incomplete, where a rerun resumes an interrupted run.",
        required=True,
    )
    flags.DEFINE_integer("scenes", 10, "Number of rooms (BV2 locations / BV1 sessions).")
    flags.DEFINE_integer("seed", 0, "Seed; the same seed gives byte-identical output.")
    flags.DEFINE_integer("height", None, "Image height (default: the layout's real 720).")
    flags.DEFINE_integer("width", None, "Image width (default: the layout's real 1280).")
    flags.DEFINE_integer(
        "frames_per_scene",
        None,
        "Samples per room (default: BV2 4 random poses, BV1 60-frame sequence).",
    )
    flags.DEFINE_float("min_room", None, "Smallest floor dimension, metres (default 3).")
    flags.DEFINE_float("max_room", None, "Largest floor dimension, metres (BV2 30, BV1 12).")
    flags.DEFINE_float(
        "min_canonical_room",
        None,
        "Smallest floor dimension of the room's shape before --global_scale scales its size into "
        "[min_room, max_room] (default: min_room); below min_room: corridors and narrow rooms.",
    )
    flags.DEFINE_bool(
        "global_scale",
        True,
        "Scale each whole scene by a random factor (image scale-ambiguous); "
        "--noglobal_scale keeps the rig at a fixed metric height.",
    )
    flags.DEFINE_list(
        "split_fractions",
        ["0.6", "0.2", "0.2"],
        "train,val,test fractions of the scenes (split by room).",
    )
    flags.DEFINE_integer("workers", 1, "Worker processes.")
    flags.DEFINE_integer("max_order", None, "Image-source reflection order (default 3).")
    flags.DEFINE_integer("max_obstacles", None, "Most box obstacles per room (default 4).")
    flags.DEFINE_integer(
        "scenes_per_session",
        1,
        "BV1: consecutive scenes sharing one dated session folder (time jump between them).",
    )
    flags.DEFINE_bool(
        "overwrite", False, "Replace a non-empty --out (once the new tree is complete)."
    )
    flags.DEFINE_integer(
        "supersample",
        None,
        "RGB rays per pixel side, averaged (default 1; 2 or more for small images, "
        "which alias otherwise).",
    )
    flags.DEFINE_float(
        "step_m",
        None,
        "BV1: the rig's step per frame before the room's scale, metres (default 0.02).",
    )
    flags.DEFINE_float(
        "max_turn_deg",
        None,
        "BV1: the rig's largest heading change per frame, degrees (default 0.5).",
    )
    flags.DEFINE_float(
        "window_prob",
        None,
        "Each wall's chance of a window: camera and depth "
        "sensor see the outdoors through it, the echo the glass (default 0).",
    )
    flags.DEFINE_integer(
        "onset_jitter",
        None,
        "Move each recording's chirp arrival by up to this many samples either way, as real "
        "recorders start with a varying lead-in (default 0).",
    )
    flags.DEFINE_integer(
        "test_frame_stride",
        1,
        "BV1: keep every k-th frame of each test sequence (the same rooms and walks; neighbours "
        "2 cm apart are near-duplicates).",
    )
    flags.DEFINE_list(
        "hfov_range_deg",
        None,
        "lo,hi: draw each scene's horizontal field of view from this range, degrees "
        "(default: the layout's nominal one).",
    )


if __name__ == "__main__":
    from absl import app  # pylint: disable=g-import-not-at-top

    _define_flags()
    app.run(main)
