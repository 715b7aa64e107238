"""Metric sinks of the train loop: TensorBoard event files and a JSON-lines file in the workdir.

`tensorboard --logdir runs/` (the workdirs' folder; pip install tensorboard, which the package
itself does not need) shows the scalars and, under IMAGES, the panels of a few fixed validation
samples written at each validation (`write_images`; avs_jax/train/summaries.py renders them).
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping

import numpy as np


class MetricWriter:
    """Writes scalar metrics to `workdir/tensorboard` (tensorboardX) and `workdir/metrics.jsonl`,
    and validation images to `workdir/tensorboard`.

    Each jsonl line is `{"step": int, "split": "train"|"eval", <name>: float, ...}`. Only the
    writing process (process 0 on several hosts) writes; others get a disabled writer.

    purge_after: the step a resumed run restarts from. Records of later steps (written after
    that checkpoint by a run that was then killed) are removed from metrics.jsonl, and
    TensorBoard hides its events past it (its purge_step), so each step is logged once.
    """

    def __init__(
        self,
        workdir: str,
        enabled: bool = True,
        tensorboard: bool = True,
        purge_after: int | None = None,
    ):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        if purge_after is not None:
            _drop_records_after(path, purge_after)
        self._jsonl = open(path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter  # no TensorFlow needed

            self._tb = SummaryWriter(
                os.path.join(workdir, "tensorboard"),
                purge_step=None if purge_after is None else int(purge_after) + 1,
            )

    def write_scalars(self, step: int, scalars: Mapping[str, float], split: str = "train"):
        """Writes one record of scalars at `step` under `split` (TensorBoard tag `split/name`)."""
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        for name, value in scalars.items():
            value = float(value)
            # JSON has no NaN/inf; write them as strings so the file stays valid JSON.
            record[name] = value if math.isfinite(value) else str(value)
            if self._tb is not None:
                self._tb.add_scalar(f"{split}/{name}", value, int(step))
        self._jsonl.write(json.dumps(record) + "\n")

    def write_images(self, step: int, images: Mapping[str, np.ndarray], split: str = "eval"):
        """Writes each image of `images` (name -> uint8 [N, H, W, 3]) at `step` to TensorBoard,
        sample i under the tag `split/name/i` (jsonl gets none).

        One tag per sample, as Monodepth2 logs `disp_0/j`: tensorboardX's `add_images` would
        tile the N images into one row of N wide panels, and TensorBoard's step slider on a
        sample's own card compares that sample across validations.
        """
        if self._tb is None:
            return
        for name, batch in images.items():
            for i, image in enumerate(np.asarray(batch, np.uint8)):
                self._tb.add_image(f"{split}/{name}/{i}", image, int(step), dataformats="HWC")

    def flush(self):
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self):
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _drop_records_after(path: str, step: int) -> None:
    """Rewrites the jsonl file at `path` without records of steps > `step` (atomically).

    A line cut short by a kill is dropped too; nothing is rewritten when nothing goes.
    """
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the partial last line of a killed writer, or a blank one
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(line)
    if len(kept) == len(lines):
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in kept)
    os.replace(tmp, path)


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
    """The records of `workdir/metrics.jsonl` (optionally of one split), in file order."""
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
