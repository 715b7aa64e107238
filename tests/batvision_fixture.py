"""Writes tiny BatVision-layout folders (random content, exact real file formats) for tests/bench.

BV2: <root>/<location>/{train,val,test}.csv (official 12-column header), audio/audio_<i>.wav
(int32 PCM, 2 ch, 44.1 kHz), camera/camera_<i>.jpeg (RGB), depth/depth_<i>.npy (uint16 mm, 0 =
no return). BV1: <root>/{train,val,test}.csv with 'depth path', 'audio path left',
'audio path right', 'camera path left'; <session>/audio/raw_long/<stem>_{left,right}.npy (float32),
<session>/depth/<stem>.npy (float32 mm with NaN/inf/negatives), <session>/camera/left/<stem>.jpeg.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import PIL.Image
import soundfile as sf

# The real BatVision V2 recording of the team's test data (../shared/data, beside the repository).
REAL_BV2_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "batvision_v2_sample"
REAL_BV2_WAV = REAL_BV2_ROOT / "unknown_location" / "audio" / "audio_47.wav"

BV2_HEADER = [
    "index",
    "time",
    "left audio time",
    "right audio time",
    "audio path",
    "audio file name",
    "camera time",
    "camera path",
    "camera file name",
    "depth time",
    "depth path",
    "depth file name",
]
BV1_HEADER = ["index", "depth path", "audio path left", "audio path right", "camera path left"]


def recording(rng: np.random.Generator, samples: int) -> np.ndarray:
    """[2, samples] echo-like recording in full-scale units: noise (std 1e-3), then from a random
    onset in the first fifth a 32-sample burst (amplitude 0.5, the direct path) and a decaying
    random tail (the echoes), so that the builder finds a chirp onset as in real files."""
    x = rng.normal(0.0, 1e-3, (2, samples))
    onset = int(rng.integers(samples // 10, samples // 5))
    n = samples - onset
    b = min(32, n // 2)  # burst length (tiny test recordings have fewer samples)
    t = np.arange(n)
    x[:, onset : onset + b] += 0.5 * np.sin(2 * np.pi * t[:b] / 8.0 + 0.5)
    x[:, onset + b :] += 0.1 * rng.standard_normal((2, n - b)) * np.exp(-t[b:] / (0.3 * n))
    return np.clip(x, -1.0, 1.0 - 2.0**-31)


def _jpeg(path: Path, rng: np.random.Generator, hw: tuple[int, int]) -> None:
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    PIL.Image.fromarray(img).save(path, format="JPEG", quality=95)


def write_bv2(
    root,
    locations: dict[str, dict[str, int]],
    hw=(24, 32),
    frames=2000,
    seed=0,
    intrinsics: dict | None = None,
) -> Path:
    """BV2 root with ``locations`` = {name: {split: n_samples}}; returns the root."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    i = 0
    for loc, splits in locations.items():
        for kind in ("audio", "camera", "depth"):
            (root / loc / kind).mkdir(parents=True, exist_ok=True)
        if intrinsics is not None:
            (root / loc / "intrinsics.json").write_text(json.dumps(intrinsics))
        for split in ("train", "val", "test"):
            with open(root / loc / f"{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(BV2_HEADER)
                for _ in range(splits.get(split, 0)):
                    pcm = np.round(recording(rng, frames).T * 2.0**31).astype(np.int32)
                    sf.write(root / loc / "audio" / f"audio_{i}.wav", pcm, 44100, subtype="PCM_32")
                    _jpeg(root / loc / "camera" / f"camera_{i}.jpeg", rng, hw)
                    depth = rng.integers(0, 40000, hw, dtype=np.uint16)
                    depth[rng.random(hw) < 0.2] = 0
                    np.save(root / loc / "depth" / f"depth_{i}.npy", depth)
                    t = 0.1 * i
                    w.writerow(
                        [
                            i,
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
                    i += 1
    return root


def bv1_stem(seconds: float) -> str:
    """BV1 file stem HHMMSS.micro of a time of day in seconds."""
    hh, rem = divmod(seconds, 3600)
    mm, ss = divmod(rem, 60)
    return f"{int(hh):02d}{int(mm):02d}{ss:09.6f}"


def write_bv1(
    root,
    sessions: dict[str, list[float]],
    split_of=None,
    hw=(24, 32),
    samples=400,
    seed=0,
    intrinsics: dict | None = None,
    poses: bool = False,
) -> Path:
    """BV1 root: ``sessions`` = {session: [time of day (s) of each frame]} in CSV order.

    ``split_of(session, j) -> split`` (default: all "train"). With ``poses``, writes
    <session>/poses.json with a distinct translation per frame (x = frame time).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    rows = {s: [] for s in ("train", "val", "test")}
    index = 0
    for sess, times in sessions.items():
        for sub in ("audio/raw_long", "depth", "camera/left"):
            (root / sess / sub).mkdir(parents=True, exist_ok=True)
        table = {}
        for j, t in enumerate(times):
            stem = bv1_stem(t)
            for ear, x in zip(("left", "right"), recording(rng, samples)):
                np.save(root / sess / "audio/raw_long" / f"{stem}_{ear}.npy", x.astype(np.float32))
            depth = rng.uniform(0, 15000, hw).astype(np.float32)
            depth[0, 0], depth[0, 1], depth[0, 2] = np.nan, np.inf, -5.0
            np.save(root / sess / "depth" / f"{stem}.npy", depth)
            _jpeg(root / sess / "camera/left" / f"{stem}.jpeg", rng, hw)
            pose = np.eye(4)
            pose[0, 3] = t
            table[stem] = pose.tolist()
            split = split_of(sess, j) if split_of else "train"
            rows[split].append(
                [
                    index,
                    f"{sess}/depth/{stem}.npy",
                    f"{sess}/audio/raw_long/{stem}_left.npy",
                    f"{sess}/audio/raw_long/{stem}_right.npy",
                    f"{sess}/camera/left/{stem}.jpeg",
                ]
            )
            index += 1
        if poses:
            (root / sess / "poses.json").write_text(json.dumps(table))
    if intrinsics is not None:
        (root / "intrinsics.json").write_text(json.dumps(intrinsics))
    for split, rr in rows.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(BV1_HEADER)
            w.writerows(rr)
    return root


def rewrite_csv_cell(csv_path, row: int, column: str, value: str) -> None:
    """Sets one cell (data row ``row``, 0-based) of a CSV."""
    with open(csv_path, newline="") as f:
        data = list(csv.reader(f))
    data[row + 1][data[0].index(column)] = value
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(data)


def drop_csv_column(csv_path, column: str) -> None:
    """Removes a column from a CSV."""
    with open(csv_path, newline="") as f:
        data = list(csv.reader(f))
    k = data[0].index(column)
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([r[:k] + r[k + 1 :] for r in data])
