"""An analytic scene for the relative-depth tests: a textured box room seen by a pinhole camera.

Exact ray casting (no meshes): a camera inside the box [−X, X] × [−Y, Y] × [−Z, Z] sees, along
each pixel ray, the first wall hit; the wall's colour is a smooth solid texture of the world point,
so two views of the same point have the same colour (Lambertian, no lighting). Camera frame is
OpenCV's (x right, y down, z forward), as Monodepth2 assumes. Used until the simulator lands.
"""

from __future__ import annotations

import numpy as np

# Room half-extents (m) and texture frequencies (rad/m): smooth enough that bilinear sampling at
# about 50 px focal length is accurate, varied enough that every patch has gradient.
ROOM = np.array([2.0, 1.2, 4.0])
_FREQS = np.array([[3.1, 2.3, 1.7], [-1.9, 3.7, 2.9], [2.6, -2.2, 3.3]])
_FREQS2 = np.array([[5.3, -1.1, 4.1], [1.3, 4.9, -3.7], [-4.3, 2.1, 5.9]])
_PHASE = np.array([0.3, 1.7, 2.9])


def intrinsics(h: int, w: int, focal: float | None = None) -> np.ndarray:
    """Pinhole K `[3, 3]` with the principal point at the image centre (pixel-centre convention)."""
    f = focal if focal is not None else 0.75 * w
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float64)


def pose(position, yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    """Camera-to-world `[4, 4]`: rotation by yaw (about y) then pitch (about x), at `position`."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    c2w = np.eye(4)
    c2w[:3, :3] = r_yaw @ r_pitch
    c2w[:3, 3] = position
    return c2w


def texture(points: np.ndarray) -> np.ndarray:
    """Colour in [0, 1] of world points `[..., 3]` → `[..., 3]`."""
    a = np.sin(points @ _FREQS.T + _PHASE)
    b = np.sin(points @ _FREQS2.T + 2 * _PHASE)
    return np.clip(0.5 + 0.25 * a + 0.15 * b, 0.0, 1.0)


def render(c2w: np.ndarray, K: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Image `[h, w, 3]` (float32, [0, 1]) and z-depth `[h, w]` seen from camera pose `c2w`."""
    v, u = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    rays_cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1
    rays = rays_cam @ c2w[:3, :3].T
    origin = c2w[:3, 3]
    with np.errstate(divide="ignore"):
        t_axes = (np.sign(rays) * ROOM - origin) / rays
    t_axes = np.where(np.abs(rays) > 1e-12, t_axes, np.inf)
    t = t_axes.min(-1)  # the first wall along the ray; its z-depth is t since ray_cam z = 1
    hit = origin + t[..., None] * rays
    return texture(hit).astype(np.float32), t.astype(np.float32)


def relative_pose(c2w_target: np.ndarray, c2w_source: np.ndarray) -> np.ndarray:
    """`[4, 4]` mapping target-camera points to source-camera points (Monodepth2's cam_T_cam)."""
    return np.linalg.inv(c2w_source) @ c2w_target


def forward_triple(rng: np.random.Generator, h: int, w: int, step: float = 0.3):
    """A triple (t−1, t, t+1) of a camera moving forward along its heading, with K and poses.

    Returns frames `[3, h, w, 3]`, depths `[3, h, w]`, K `[3, 3]`, poses `[3, 4, 4]` (c2w).
    """
    yaw = rng.uniform(-0.4, 0.4)
    pitch = rng.uniform(-0.1, 0.1)
    start = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.4, 0.4), rng.uniform(-2.0, 0.5)])
    heading = pose(np.zeros(3), yaw, pitch)[:3, 2]
    K = intrinsics(h, w)
    poses = np.stack([pose(start + k * step * heading, yaw, pitch) for k in (-1, 0, 1)])
    frames, depths = zip(*(render(p, K, h, w) for p in poses))
    return np.stack(frames), np.stack(depths), K.astype(np.float32), poses
