"""Figures as PNG: depth panels like the paper's Fig. 5, Grad-CAM panels like Fig. 6, and one
metric depth map with its colour bar (`python -m avs_jax.predict`)."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SPEED_OF_SOUND = 343.0  # m/s; an echo after t seconds travelled to a surface at 343 t / 2 m
DEPTH_CMAP = "magma_r"
ERROR_CMAP = "inferno"


def _safe_name(sample_id: str) -> str:
    return sample_id.replace("/", "__").replace(os.sep, "__")


def depth_vmax(gt: np.ndarray, max_depth: float) -> float:
    """Top of a depth colour scale: 1.25 × the 99th percentile of the valid ground truth `[H, W]`,
    at most `max_depth` (and `max_depth` when nothing is valid)."""
    valid = np.isfinite(gt) & (gt > 0) & (gt < max_depth)
    if not valid.any():
        return float(max_depth)
    return float(min(max_depth, 1.25 * np.percentile(gt[valid], 99)))


def depth_panel(
    path: str,
    sample_id: str,
    rgb: np.ndarray,
    gt: np.ndarray,
    preds: dict[str, np.ndarray],
    max_depth: float,
    error_of: Sequence[str] = (),
) -> str:
    """Fig. 5-like row: RGB, ground truth, each prediction, then |prediction - gt| maps.

    All depth maps share one metric colour scale with one colour bar in metres, from 0 to
    `depth_vmax(gt, max_depth)` (the image's own depth range, not the dataset's: a 2 m room on a
    0-30 m scale is one flat colour); the error maps share another. Invalid ground-truth pixels
    are shown black in the error maps.

    Args:
      rgb: `[H, W, 3]` in [0, 1]; gt: `[H, W]` metres (0 = invalid).
      preds: title -> `[H, W]` metric depth at gt's resolution.
      error_of: titles of `preds` whose absolute error is shown.
    """
    valid = np.isfinite(gt) & (gt > 0) & (gt < max_depth)
    n = 2 + len(preds) + len(error_of)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 1.2, 2.4), constrained_layout=True)
    axes[0].imshow(np.clip(rgb, 0, 1))
    axes[0].set_title("RGB")
    depth_axes = [axes[1]]
    vmax = depth_vmax(gt, max_depth)
    im = axes[1].imshow(np.where(valid, gt, np.nan), cmap=DEPTH_CMAP, vmin=0, vmax=vmax)
    axes[1].set_title("Ground truth")
    for ax, (title, d) in zip(axes[2:], preds.items()):
        ax.imshow(d, cmap=DEPTH_CMAP, vmin=0, vmax=vmax)
        ax.set_title(title)
        depth_axes.append(ax)
    errors = {t: np.where(valid, np.abs(preds[t] - gt), np.nan) for t in error_of}
    emax = max([np.nanpercentile(e, 99) for e in errors.values() if np.isfinite(e).any()] + [1e-3])
    err_axes = []
    eim = None
    for ax, (title, e) in zip(axes[2 + len(preds) :], errors.items()):
        eim = ax.imshow(e, cmap=ERROR_CMAP, vmin=0, vmax=emax)
        ax.set_facecolor("black")
        ax.set_title(f"|{title} − GT|")
        err_axes.append(ax)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=depth_axes, label="depth [m]", shrink=0.9)
    if eim is not None:
        fig.colorbar(eim, ax=err_axes, label="abs. error [m]", shrink=0.9)
    fig.suptitle(sample_id, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def depth_map_png(path: str, depth: np.ndarray, title: str, max_depth: float) -> str:
    """One metric depth map `[H, W]` as a PNG: DEPTH_CMAP with a colour bar in metres, from 0 to
    `depth_vmax(depth, max_depth)` (the map's own range, as the depth panels' scale)."""
    h, w = depth.shape
    width = min(max(w / 100.0, 4.0), 12.0)  # about one figure pixel per map pixel, within reason
    fig, ax = plt.subplots(figsize=(width + 1.4, width * h / w + 0.5), constrained_layout=True)
    im = ax.imshow(depth, cmap=DEPTH_CMAP, vmin=0, vmax=depth_vmax(depth, max_depth))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="depth [m]", shrink=0.9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def gradcam_panel(
    path: str,
    sample_id: str,
    rgb: np.ndarray,
    gt: np.ndarray,
    depth_echo: np.ndarray,
    depth_rgb: np.ndarray,
    stft: np.ndarray,
    cam_stft: np.ndarray,
    cam_rgb_echo: np.ndarray,
    cam_rgb_only: np.ndarray,
    hop_seconds: float,
    max_depth: float,
    nyquist_khz: float = 22.05,
) -> str:
    """Fig. 6-like panels: inputs and depths on top; attention maps below.

    The STFT attention is drawn over the left-ear magnitude with a time axis in seconds and a
    second axis in metres (d = 343 t / 2, the distance of a surface whose echo arrives at t).

    Args:
      stft: `[F, T]` magnitude (one ear); cam_stft: `[F, T]` in [0, 1].
      cam_rgb_echo, cam_rgb_only: `[H, W]` maps on the RGB input of the two models.
      hop_seconds: time between STFT columns; nyquist_khz: the top of the frequency axis.
    """
    fig, axes = plt.subplots(2, 4, figsize=(14, 5.4), constrained_layout=True)
    axes[0, 0].imshow(np.clip(rgb, 0, 1))
    axes[0, 0].set_title("RGB")
    valid = (gt > 0) & (gt < max_depth)
    im = axes[0, 1].imshow(np.where(valid, gt, np.nan), cmap=DEPTH_CMAP, vmin=0, vmax=max_depth)
    axes[0, 1].set_title("Ground truth")
    axes[0, 2].imshow(depth_rgb, cmap=DEPTH_CMAP, vmin=0, vmax=max_depth)
    axes[0, 2].set_title("Only-RGB")
    axes[0, 3].imshow(depth_echo, cmap=DEPTH_CMAP, vmin=0, vmax=max_depth)
    axes[0, 3].set_title("RGB-Echoes")
    fig.colorbar(im, ax=list(axes[0]), label="depth [m]", shrink=0.9)
    f, t = stft.shape
    extent = (0.0, t * hop_seconds, 0.0, nyquist_khz)
    ax = axes[1, 0]
    ax.imshow(np.log1p(stft), origin="lower", aspect="auto", cmap="gray", extent=extent)
    cim = ax.imshow(
        cam_stft,
        origin="lower",
        aspect="auto",
        cmap="jet",
        alpha=0.5,
        extent=extent,
        vmin=0,
        vmax=1,
    )
    ax.set_xlabel("time [s]")
    ax.set_ylabel("frequency [kHz]")
    ax.set_title("Grad-CAM on the STFT")
    top = ax.secondary_xaxis(
        "top", functions=(lambda s: s * SPEED_OF_SOUND / 2, lambda d: 2 * d / SPEED_OF_SOUND)
    )
    top.set_xlabel("distance [m]")
    diff = axes[1, 1].imshow(np.abs(depth_echo - depth_rgb), cmap=ERROR_CMAP)
    axes[1, 1].set_title("|RGB-Echoes − Only-RGB|")
    fig.colorbar(diff, ax=axes[1, 1], label="[m]", shrink=0.8)
    for ax, cam, title in (
        (axes[1, 2], cam_rgb_only, "Grad-CAM on RGB (Only-RGB)"),
        (axes[1, 3], cam_rgb_echo, "Grad-CAM on RGB (RGB-Echoes)"),
    ):
        ax.imshow(np.clip(rgb, 0, 1))
        ax.imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(title)
    for ax in list(axes[0]) + [axes[1, 1], axes[1, 2], axes[1, 3]]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(cim, ax=list(axes[1]), label="attention", shrink=0.9)
    fig.suptitle(sample_id, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figure_path(figdir: str, kind: str, sample_id: str) -> str:
    os.makedirs(figdir, exist_ok=True)
    return os.path.join(figdir, f"{kind}_{_safe_name(sample_id)}.png")
