"""Room geometry for the simulator: shoebox rooms, box obstacles, pinhole cameras, ray casting.

Conventions (the same as OpenCV / Monodepth2, used by every consumer of the simulated poses):

- World frame: the room is the axis-aligned box ``[0, W] x [0, D] x [0, H]`` in metres, ``z`` up
  (``z = 0`` is the floor).
- Camera frame: ``x`` right, ``y`` down, ``z`` forward (the optical axis).
- Pose: ``T_c2w`` is a 4x4 camera-to-world matrix, ``X_world = T_c2w @ X_cam``; its rotation columns
  are the camera's right, down and forward axes expressed in world coordinates.
- Pixels: the pixel with integer column ``u`` and row ``v`` looks along
  ``K^-1 [u, v, 1]^T`` (the pixel centre sits at the integer coordinate, as in Monodepth2's
  back-projection of an integer mesh grid); ``cx = (W - 1) / 2`` so a horizontal flip of the image
  is the mirror image of the scene.
- Depth: z-depth along the optical axis (what a depth camera reports), not the ray length.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Surface ids: the six room planes, then the boxes (6 + box index), then the outdoor planes seen
# through the windows (6 + number of boxes + window index).
WALL_X0, WALL_X1, WALL_Y0, WALL_Y1, FLOOR, CEILING = range(6)
NUM_ROOM_SURFACES = 6


@dataclasses.dataclass(frozen=True)
class Box:
    """An axis-aligned box obstacle: ``lo`` and ``hi`` corners [3] in world metres."""

    lo: np.ndarray
    hi: np.ndarray

    def scaled(self, s: float) -> "Box":
        return Box(self.lo * s, self.hi * s)


@dataclasses.dataclass(frozen=True)
class Window:
    """A glass pane in one wall, seen through by the camera and the depth sensor, not by sound.

    ``wall`` is the wall's surface id (WALL_X0 .. WALL_Y1); ``lo`` and ``hi`` [2] bound the pane in
    the wall's plane: (y, z) on the x walls, (x, z) on the y walls. Behind it lies the outdoors, a
    plane parallel to the wall ``outside`` metres beyond it. Acoustically the pane is wall (glass
    reflects sound like plaster), so the echo does not know about it.
    """

    wall: int
    lo: np.ndarray
    hi: np.ndarray
    outside: float

    def scaled(self, s: float) -> "Window":
        return Window(self.wall, self.lo * s, self.hi * s, self.outside * s)


@dataclasses.dataclass(frozen=True)
class Room:
    """A shoebox room ``[0, dims]`` with box obstacles standing inside it and windows in its walls.

    Surface ids: the six room planes, then the boxes (6 + box index), then the outdoor planes seen
    through the windows (6 + number of boxes + window index).
    """

    dims: np.ndarray  # [3] width (x), depth (y), height (z) in metres.
    boxes: tuple[Box, ...] = ()
    windows: tuple[Window, ...] = ()

    def scaled(self, s: float) -> "Room":
        """The same room uniformly scaled about the world origin by ``s``."""
        return Room(
            self.dims * s,
            tuple(b.scaled(s) for b in self.boxes),
            tuple(w.scaled(s) for w in self.windows),
        )

    @property
    def num_surfaces(self) -> int:
        return NUM_ROOM_SURFACES + len(self.boxes) + len(self.windows)


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics at the native image resolution (pixels)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, height: int, width: int, hfov_deg: float) -> "Intrinsics":
        """Square-pixel intrinsics with the given horizontal field of view; centre per module doc."""
        fx = 0.5 * width / np.tan(0.5 * np.deg2rad(hfov_deg))
        return cls(
            float(fx), float(fx), (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height)
        )

    def matrix(self) -> np.ndarray:
        """K as float64 [3, 3]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def look_pose(position: np.ndarray, heading: float, pitch: float = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 of a camera at ``position`` [3] looking along yaw ``heading`` (rad).

    ``heading`` is measured in the floor plane from the world x axis towards y; ``pitch`` tilts the
    optical axis up (positive) about the camera's x axis. The camera is never rolled.
    """
    c, s = np.cos(heading), np.sin(heading)
    cp, sp = np.cos(pitch), np.sin(pitch)
    forward = np.array([c * cp, s * cp, sp])
    right = np.array([s, -c, 0.0])  # forward x up, so (right, down, forward) is right-handed.
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


def camera_rays(intr: Intrinsics) -> np.ndarray:
    """Un-normalised camera-frame ray directions [H, W, 3] with z = 1 (so ray parameter = z-depth)."""
    u = np.arange(intr.width, dtype=np.float64)
    v = np.arange(intr.height, dtype=np.float64)
    uu, vv = np.meshgrid(u, v)
    return np.stack([(uu - intr.cx) / intr.fx, (vv - intr.cy) / intr.fy, np.ones_like(uu)], -1)


@dataclasses.dataclass
class RayHits:
    """The first surface each camera ray hits; arrays are [H, W] (points and normals [H, W, 3])."""

    depth: np.ndarray  # z-depth in metres (ray parameter along the z = 1 direction).
    points: np.ndarray  # world hit points.
    normals: np.ndarray  # world unit normals facing the camera side of the surface.
    surface: np.ndarray  # int32 surface id (module constants; then boxes, then outdoor planes).


def cast_rays(room: Room, pose: np.ndarray, intr: Intrinsics) -> RayHits:
    """Exact, vectorised ray casting of every pixel against the room's planes and boxes.

    The camera must be inside the room and outside every box. Each ray leaves the room through
    exactly one plane (the smallest positive exit parameter over the three axes), or through a
    window to the outdoor plane behind it; a box is hit where the slab intervals overlap in front
    of the camera, and the nearest hit wins.
    """
    rays_cam = camera_rays(intr)
    dirs = rays_cam @ pose[:3, :3].T  # [H, W, 3] world directions, still with camera z = 1.
    origin = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        # Room exit: per axis, the plane ahead of the ray.
        t_axis = np.where(
            dirs > 0, (room.dims - origin) * inv, np.where(dirs < 0, -origin * inv, np.inf)
        )
    axis = np.argmin(t_axis, axis=-1)
    t = np.take_along_axis(t_axis, axis[..., None], -1)[..., 0]
    sign = np.take_along_axis(dirs, axis[..., None], -1)[..., 0] > 0
    surface = (2 * axis + sign).astype(np.int32)  # x0, x1, y0, y1, floor, ceiling.
    normals = np.zeros(dirs.shape)
    np.put_along_axis(normals, axis[..., None], np.where(sign, -1.0, 1.0)[..., None], -1)

    # Through a window the ray goes on to the outdoor plane, parallel to the wall and `outside`
    # beyond it (same normal). Boxes stand inside the room, so they are tested after.
    exit_points = origin + t[..., None] * dirs if room.windows else None
    for k, win in enumerate(room.windows):
        wall_axis = win.wall // 2
        plane_axes = [a for a in range(3) if a != wall_axis]
        q = exit_points[..., plane_axes]
        through = (surface == win.wall) & np.all((q >= win.lo) & (q <= win.hi), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            extra = win.outside / np.abs(dirs[..., wall_axis])
        t = np.where(through, t + extra, t)
        surface = np.where(through, NUM_ROOM_SURFACES + len(room.boxes) + k, surface).astype(
            np.int32
        )

    for i, box in enumerate(room.boxes):
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (box.lo - origin) * inv
            t2 = (box.hi - origin) * inv
        tnear = np.minimum(t1, t2)
        tfar = np.maximum(t1, t2)
        # A ray parallel to a slab: inside it forever (t = -inf..inf) or never (empty interval).
        parallel = dirs == 0
        inside = (origin >= box.lo) & (origin <= box.hi)
        tnear = np.where(parallel, np.where(inside, -np.inf, np.inf), tnear)
        tfar = np.where(parallel, np.where(inside, np.inf, -np.inf), tfar)
        entry_axis = np.argmax(tnear, axis=-1)
        t_in = np.take_along_axis(tnear, entry_axis[..., None], -1)[..., 0]
        t_out = np.min(tfar, axis=-1)
        hit = (t_in <= t_out) & (t_in > 0) & (t_in < t)
        t = np.where(hit, t_in, t)
        surface = np.where(hit, NUM_ROOM_SURFACES + i, surface).astype(np.int32)
        entry_sign = np.take_along_axis(dirs, entry_axis[..., None], -1)[..., 0] > 0
        box_normal = np.zeros(dirs.shape)
        np.put_along_axis(
            box_normal, entry_axis[..., None], np.where(entry_sign, -1.0, 1.0)[..., None], -1
        )
        normals = np.where(hit[..., None], box_normal, normals)

    points = origin + t[..., None] * dirs
    return RayHits(depth=t, points=points, normals=normals, surface=surface)


def point_in_boxes(room: Room, points: np.ndarray, margin: float) -> np.ndarray:
    """Whether each point [N, 3] is within ``margin`` of any box in the floor plane -> [N] bool."""
    out = np.zeros(points.shape[0], dtype=bool)
    for box in room.boxes:
        xy = points[:, :2]
        inside = np.all((xy >= box.lo[:2] - margin) & (xy <= box.hi[:2] + margin), -1)
        out |= inside
    return out
