"""TensorBoard images at each validation: a few fixed validation samples, rendered on the host.

`ValidationImages` keeps the first `config.train.num_summary_images` samples of the first
validation batch (on the host, once), so that every validation shows the same samples; at each
validation it hands the state's variables and those samples to the task's optional
`summary_images(variables, batch)` (avs_jax/train/tasks.py), whose panels the loop writes with
`MetricWriter.write_images`. The panels below are plain numpy: matplotlib's colour maps applied
to arrays, no figure drawn, so a validation spends milliseconds on them.

Colours are those of the evaluation figures (avs_jax/evaluation/figures.py): metric depth in
`DEPTH_CMAP` from 0 to `depth_vmax(ground truth)`, ground truth and prediction on that one range,
invalid ground truth white (the figures leave it blank); the echo STFT in grey, in decibels, low
frequencies at the bottom.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import jax
import matplotlib
import numpy as np

# Monodepth2 logs (and its test_simple.py colours) disparity with magma from its minimum to its
# 95th percentile per image: a relative model has no metric scale to share across images. magma
# on disparity reads as DEPTH_CMAP (magma_r) on depth does: near bright, far dark.
DISPARITY_CMAP = "magma"
WHITE = 255
STFT_TOP_DB = 80.0  # the STFT panel's range below its maximum (librosa's amplitude_to_db top_db)


def colorize(
    values: np.ndarray, vmin: float, vmax: float, cmap: str, invalid: np.ndarray | None = None
) -> np.ndarray:
    """`values` [...] mapped by matplotlib's `cmap` on [vmin, vmax] (clipped) -> uint8 [..., 3].

    The same colours as `imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)`; pixels where
    `invalid` (bool, values' shape) or where values are NaN are white.
    """
    values = np.asarray(values, np.float32)
    scaled = (values - vmin) / max(float(vmax) - float(vmin), 1e-12)
    rgb = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(scaled), 0.0, 1.0), bytes=True)
    rgb = rgb[..., :3].copy()
    blank = (
        ~np.isfinite(values) if invalid is None else (np.asarray(invalid) | ~np.isfinite(values))
    )
    rgb[blank] = WHITE
    return rgb


def rgb_panel(image: np.ndarray) -> np.ndarray:
    """Image [..., 3] in [0, 1] -> uint8."""
    return np.round(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def stft_panel(magnitude: np.ndarray) -> np.ndarray:
    """One ear's STFT magnitude [F, T] (the echo input: F along the image height) -> uint8
    [F, T, 3] grey: decibels below its maximum, black at STFT_TOP_DB below, low frequencies at
    the bottom (as Fig. 6).

    Decibels, not Fig. 6's log1p: the magnitudes span orders of magnitude (a simulated BV2
    echo's median is ~1e-3 of its maximum), where log1p is linear and only the direct sound's
    columns show.
    """
    mag = np.maximum(np.asarray(magnitude, np.float32), 0.0)
    top = float(mag.max())
    if top <= 0:
        return np.zeros(mag.shape + (3,), np.uint8)
    db = 20.0 * np.log10(np.maximum(mag / top, 10.0 ** (-STFT_TOP_DB / 20.0)))
    grey = np.round(255 * (1.0 + db / STFT_TOP_DB)).astype(np.uint8)
    return np.repeat(grey[::-1, :, None], 3, axis=-1)


def tile(rows: Sequence[Sequence[np.ndarray | None]]) -> np.ndarray:
    """Equal-sized uint8 panels [H, W, 3] in a grid (None: a white panel) -> [rows·H, cols·W, 3]."""
    shape = next(p.shape for row in rows for p in row if p is not None)
    blank = np.full(shape, WHITE, np.uint8)
    return np.concatenate(
        [np.concatenate([blank if p is None else p for p in row], axis=1) for row in rows], axis=0
    )


def depth_panels(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    echo: np.ndarray | None,
    max_depth: float,
) -> np.ndarray:
    """Stage 1: per sample `[[RGB, echo STFT], [ground truth, prediction]]` -> uint8 [N, 2H, 2W, 3].

    image [N, H, W, 3] in [0, 1]; gt [N, H, W] metres (0 = invalid); pred [N, H, W] metres;
    echo [N, H, W, 2] STFT magnitude [left, right] (its left ear is shown) or None (the Only-RGB
    model: a white panel). Depths in DEPTH_CMAP on 0 .. depth_vmax(gt) of each sample, as
    `figures.depth_panel`; ground truth outside (0, max_depth) white.
    """
    # Here, not at the top: figures.py selects matplotlib's Agg backend when imported, which a
    # notebook that only builds a Task must not get.
    from avs_jax.evaluation.figures import DEPTH_CMAP, depth_vmax  # noqa: PLC0415

    out = []
    for i in range(len(image)):
        vmax = depth_vmax(gt[i], max_depth)
        invalid = ~(np.isfinite(gt[i]) & (gt[i] > 0) & (gt[i] < max_depth))
        rows = [
            [rgb_panel(image[i]), None if echo is None else stft_panel(echo[i, ..., 0])],
            [
                colorize(gt[i], 0.0, vmax, DEPTH_CMAP, invalid),
                colorize(pred[i], 0.0, vmax, DEPTH_CMAP),
            ],
        ]
        out.append(tile(rows))
    return np.stack(out)


def disparity_panels(image: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Relative stage: per sample `[[RGB], [disparity]]` -> uint8 [N, 2H, W, 3].

    image [N, H, W, 3] in [0, 1]; disp [N, H, W] (the DepthNet's sigmoid output), each in
    DISPARITY_CMAP from its minimum to its 95th percentile (Monodepth2's test_simple.py).
    """
    out = []
    for i in range(len(image)):
        d = np.asarray(disp[i], np.float32)
        panel = colorize(d, float(d.min()), float(np.percentile(d, 95)), DISPARITY_CMAP)
        out.append(tile([[rgb_panel(image[i])], [panel]]))
    return np.stack(out)


def local_copy(tree: Any) -> Any:
    """This process's copy of replicated (state) arrays, on one of its devices.

    The summaries' prediction then runs on one device of process 0 alone: no collective with
    other processes, and N samples need not divide over the devices.
    """
    return jax.tree.map(
        lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else np.asarray(x), tree
    )


class ValidationImages:
    """The fixed validation samples and their panels at each validation.

    Args:
      task: the stage's Task; without a `summary_images` method there are no images.
      num_images: samples shown (`config.train.num_summary_images`); <= 0: none.
      enabled: False on processes other than 0 (they write no events).
    """

    def __init__(self, task: Any, num_images: int, enabled: bool = True):
        render = getattr(task, "summary_images", None)
        self._render = render if enabled and num_images > 0 and callable(render) else None
        self._num = int(num_images)
        self._samples: dict[str, np.ndarray] | None = None

    def watch(self, batches: Iterable[dict]) -> Iterator[dict]:
        """`batches` unchanged; the first time, keeps the first samples of the first batch
        (the rows with `valid_example`, when the pipeline padded the batch)."""
        for batch in batches:
            if self._render is not None and self._samples is None:
                self._samples = _first_samples(batch, self._num)
            yield batch

    def render(self, state: Any) -> dict[str, np.ndarray]:
        """name -> uint8 [N, H, W, 3] of the task's panels with `state`'s variables ({} if none)."""
        if self._render is None or not self._samples:
            return {}
        variables = local_copy({"params": state.params, **state.model_state})
        return {
            k: np.asarray(v, np.uint8) for k, v in self._render(variables, self._samples).items()
        }


def _first_samples(batch: dict, n: int) -> dict[str, np.ndarray]:
    """The numeric entries of the first `n` valid rows of `batch` as host copies ({} if none)."""
    keep = np.ones(len(next(iter(batch.values()))), bool)
    if "valid_example" in batch:
        keep = np.asarray(batch["valid_example"], bool)
    rows = np.flatnonzero(keep)[:n]
    if not len(rows):
        return {}
    samples = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if v.dtype.kind in "biuf" and v.ndim and len(v) == len(keep):
            samples[k] = v[rows].copy()
    return samples
