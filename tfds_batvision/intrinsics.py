"""Pinhole intrinsics K [3, 3] in pixels: the nominal camera and K under an image resize.

Numpy only (no TFDS), so that the input pipeline shares these definitions with the builder
without importing it.
"""

from __future__ import annotations

import math

import numpy as np

# Nominal horizontal field of view (degrees) per dataset, used by the builder when a BatVision root
# has no intrinsics.json and by the simulator for its cameras. BatVision publishes no calibration;
# these are nominal values for a ZED-class stereo camera at HD720 (docs/reference.md, "Camera
# intrinsics and poses"), an assumption: NOT a calibration.
NOMINAL_HFOV_DEG = {"bv2": 100.0, "bv1": 85.0}


def nominal_intrinsics(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole K [3, 3] with square pixels, centred principal point and horizontal FOV hfov_deg."""
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0, (width - 1) / 2.0], [0, f, (height - 1) / 2.0], [0, 0, 1]], np.float32)


def resize_intrinsics(
    k: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> np.ndarray:
    """K for an image resized from src_hw to dst_hw (pixel centres at integers).

    The same size returns K unchanged: (c + 0.5) * 1 - 0.5 can round in float32, and K stored at
    a training size must stay what resizing at train time gives.
    """
    if tuple(src_hw) == tuple(dst_hw):
        return np.array(k, np.float32, copy=True)
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    k = np.array(k, np.float32, copy=True)
    k[0, 0] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def relative_focal(k: np.ndarray, hw: tuple[int, int]) -> float:
    """The focal length of K (at an image of ``hw`` = (H, W) pixels) as a fraction of the image:
    sqrt(fx / W * fy / H), 0 when K holds no focal length (fx or fy <= 0) or hw is empty.

    Unchanged by resizing the image (`resize_intrinsics` scales fx with W and fy with H), so two
    cameras compare at whatever size a model reads them (fx / W = 1 / (2 tan(hfov / 2))).
    """
    fx, fy = float(k[0][0]), float(k[1][1])
    if not (fx > 0 and fy > 0 and hw[0] > 0 and hw[1] > 0):
        return 0.0
    return math.sqrt(fx / hw[1] * fy / hw[0])
