"""Simulated scenes: a room, its textures, the rig's poses, and what the rig sees and hears.

A scene is one shoebox room with box obstacles, optionally windows onto the outdoors
(``SceneConfig.window_prob``), and a sequence of rig poses: a smooth elliptical
path looking along its tangent (BV1 sessions are sequences) or independent random poses in the
same room (BV2 locations hold unrelated samples). ``render_frame`` gives the exact RGB and depth,
``sensor_holes`` gives the depth-camera artefacts, ``record_echo`` the binaural recording.

Scale ambiguity (docs/reference.md, "Simulator layout"): the room is first drawn in metres with the rig at
``RIG_HEIGHT_M``; with ``global_scale`` the whole scene (room, obstacles, rig path and height,
texture frequencies) is then multiplied by one random factor chosen so the room stays within the
room-size range. The rendered image is then identical for every factor; only the echo, which is
always simulated in metres at 343 m/s, knows the true size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.ndimage

from tfds_batvision.sim import acoustics, geometry, render

RIG_HEIGHT_M = 0.7  # camera/ear height of a small robot when the scale is not randomised.
CEILING_RANGE_M = (2.4, 3.5)
WALL_MARGIN_M = 0.5  # the rig keeps this far from the walls.
# Smallest floor dimension before global_scale: the rig's margins plus 0.5 m to move in.
MIN_ROOM_M = 2 * WALL_MARGIN_M + 0.5
OBSTACLE_MARGIN_M = 0.4  # and this far from any obstacle (floor-plane distance).
OBSTACLE_SIZE_M = (0.3, 1.5)
OBSTACLE_HEIGHT_M = (0.3, 2.0)
PITCH_RANGE_RAD = (-0.08, 0.08)
STEP_M = 0.02  # rig displacement between consecutive frames of a sequence (before scaling).
# Largest heading change between consecutive frames of a sequence. Without it the arc step STEP_M
# on the small ellipses of 3 m rooms (radius ~0.6 m) turned the rig up to 37 degrees (median 9,
# measured on 12 BV1-like sessions) between the t-20 and t frames of a triple, 40% of the
# 90-degree view: little overlap left for the self-supervised DepthNet/PoseNet at 64x128.
# 0.5 degrees per frame bounds it to 10 degrees per 20 frames (the step then shortens in small
# rooms: the rig slows down in tight turns). The bound holds for the heading, not only for the
# ellipse's parameter: before that was so, elongated ellipses turned the rig up to 2 degrees per
# frame at their ends, 21 degrees between the frames of some triples.
MAX_TURN_RAD = np.deg2rad(0.5)
ABSORPTION_RANGE = (0.1, 0.4)  # energy absorption of the walls.
DEPTH_EDGE_REL_JUMP = 0.1  # neighbours on different surfaces with a larger jump -> no return.
SPECKLE_FRACTION = 0.003  # random pixels without a return.
EDGE_HOLE_WIDTH_FRAC = 1 / 320  # edge holes widen with resolution: 4 px at 1280 wide.
BLOB_FRACTION_RANGE = (0.02, 0.25)  # low-confidence regions; the real BV2 sample has ~20% holes.
BLOB_GRID = (6, 10)  # coarse random field upsampled into smooth blobs.
# Windows (SceneConfig.window_prob), canonical metres: pane width, sill and pane height, and the
# distance from the wall to the outdoor plane the camera and the depth sensor see through them.
WINDOW_WIDTH_M = (0.8, 2.5)
WINDOW_SILL_M = (0.6, 1.0)
WINDOW_HEIGHT_M = (1.0, 1.6)
WINDOW_OUTSIDE_M = (4.0, 15.0)
OUTDOOR_BASE_RANGE = (0.55, 1.0)  # daylight: brighter than the indoor surfaces' 0.25-0.85.
OUTDOOR_PERIOD_SCALE = 5.0  # outdoor structure (trees, facades) is coarser than wall texture.


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Everything that shapes a simulated scene; the defaults are BV2-like."""

    height: int = 720
    width: int = 1280
    hfov_deg: float = 90.0
    frames_per_scene: int = 4
    sequence: bool = False  # True: a smooth moving path (BV1 session); False: random poses.
    min_room: float = 3.0
    max_room: float = 30.0
    global_scale: bool = True
    # Smallest floor dimension of the room as drawn, before global_scale (None: min_room). Below
    # min_room it draws corridors and narrow rooms, whose pictures (walls within a metre, a
    # ceiling higher than the room is wide) rooms drawn at 3 m and up never show, while
    # global_scale still puts their metric size in [min_room, max_room]: the longer side is cut
    # to max_room / min_room times the shorter, the most the scale can fit in the range.
    min_canonical_room: float | None = None
    max_obstacles: int = 4
    max_order: int = 3  # image-source order; small keeps hundreds of scenes fast.
    noise_std: float = 1e-3  # microphone noise, full-scale units (real BV2 floor ~1.5e-3 std).
    sensor_min_range: float = 0.3  # metres; closer surfaces give no depth (stereo minimum).
    sensor_max_range: float = 20.0  # metres beyond which the depth camera returns nothing.
    # RGB samples per pixel side: a camera pixel integrates the light over its area, so the colour
    # is the mean of supersample x supersample sub-pixel rays (1: one ray through the centre).
    # Small images need it: at 64x128 one pixel spans ~5 cm at 3 m while the textures have periods
    # from 8 cm, and point-sampled frames alias (the true-depth warp error of a t, t+20 pair is
    # 0.060 point-sampled and 0.045 with 2x2, measured on 6 BV1-like rooms): noise in the
    # photometric signal a relative depth model learns from. (2x2 in both quickstart simulators,
    # three seeds: one tiny relative model gained structure, one collapsed to the depth floor;
    # not adopted, configs/quickstart.py.) Depth stays the centre ray's.
    supersample: int = 1
    # Rig motion of a sequence per frame (canonical scale, before global_scale): arc step in metres
    # and the largest heading change in degrees (see STEP_M and MAX_TURN_RAD).
    step_m: float = STEP_M
    max_turn_deg: float = float(np.degrees(MAX_TURN_RAD))
    # Probability that a wall has a window (one pane at most per wall). Through a window the camera
    # and the depth sensor see the outdoors, several metres beyond the wall, while the echo comes
    # back from the glass as from the wall: depth far beyond the room in a few image regions, the
    # kind of outlier that real indoor depth maps have and that the paper (Sec. 3.2) gives as the
    # reason to scale by medians rather than by mean and standard deviation. 0: no windows (the
    # random draws of every other quantity are then the same as before windows existed).
    window_prob: float = 0.0
    # Recording start jitter: each recording's chirp arrives up to this many samples (uniform)
    # before or after the layout's onset, as real recorders do not start at a fixed lead-in;
    # exercises the onset alignment (tfds_batvision.onset). 0: every recording at the onset.
    onset_jitter: int = 0
    # Each scene's horizontal field of view drawn uniformly from this range (degrees) instead of
    # hfov_deg: the many cameras a pretraining corpus should show (MiDaS trains on a dozen
    # datasets). Drawn last, so the rest of the scene is the same as with a fixed hfov_deg.
    hfov_range_deg: tuple[float, float] | None = None


@dataclasses.dataclass(frozen=True)
class Scene:
    """A room in metres, its textures and the rig's camera-to-world poses [F, 4, 4]."""

    room: geometry.Room
    textures: tuple[render.SurfaceTexture, ...]
    poses: np.ndarray
    intrinsics: geometry.Intrinsics
    scale: float  # the global factor applied to the canonical scene (1 without global_scale).
    absorption: float

    def scaled(self, factor: float) -> "Scene":
        """The same scene with everything metric (room, poses, texture units) scaled by ``factor``."""
        poses = self.poses.copy()
        poses[:, :3, 3] *= factor
        return dataclasses.replace(
            self, room=self.room.scaled(factor), poses=poses, scale=self.scale * factor
        )


def _sample_poses(rng: np.random.Generator, dims: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    """Rig poses [F, 4, 4] inside ``dims`` (metres, canonical scale)."""
    n = cfg.frames_per_scene
    lo = np.array([WALL_MARGIN_M, WALL_MARGIN_M])
    hi = dims[:2] - WALL_MARGIN_M
    pitch = rng.uniform(*PITCH_RANGE_RAD)
    if cfg.sequence:
        centre = rng.uniform(lo + 0.4 * (hi - lo), hi - 0.4 * (hi - lo))
        radii = rng.uniform(0.6, 1.0, size=2) * np.minimum(centre - lo, hi - centre)
        phase0 = rng.uniform(0, 2 * np.pi)
        direction = rng.choice([-1.0, 1.0])
        # Angular step giving about step_m of arc per frame on the ellipse. The heading turns by
        # dphi * ab / (a^2 sin^2 phi + b^2 cos^2 phi), up to dphi * max(a, b) / min(a, b) at the
        # ends of the long axis, so that ratio divides the turn bound.
        max_dphi = np.deg2rad(cfg.max_turn_deg) * float(radii.min() / radii.max())
        dphi = direction * min(cfg.step_m / max(float(np.mean(radii)), 1e-3), max_dphi)
        phi = phase0 + dphi * np.arange(n)
        xy = centre + np.stack([radii[0] * np.cos(phi), radii[1] * np.sin(phi)], -1)
        tangent = np.stack([-radii[0] * np.sin(phi), radii[1] * np.cos(phi)], -1) * direction
        headings = np.arctan2(tangent[:, 1], tangent[:, 0])
    else:
        xy = rng.uniform(lo, hi, size=(n, 2))
        headings = rng.uniform(-np.pi, np.pi, size=n)
    return np.stack(
        [
            geometry.look_pose(np.array([x, y, RIG_HEIGHT_M]), h, pitch)
            for (x, y), h in zip(xy, headings)
        ]
    )


def _sample_boxes(
    rng: np.random.Generator, dims: np.ndarray, poses: np.ndarray, max_obstacles: int
) -> tuple[geometry.Box, ...]:
    """Up to ``max_obstacles`` floor-standing boxes that keep clear of every rig position."""
    boxes = []
    rig = poses[:, :3, 3]
    for _ in range(int(rng.integers(0, max_obstacles + 1))):
        for _attempt in range(10):
            size = np.array(
                [*rng.uniform(*OBSTACLE_SIZE_M, size=2), rng.uniform(*OBSTACLE_HEIGHT_M)]
            )
            size = np.minimum(size, dims * 0.5)
            lo = np.array([*rng.uniform(0, dims[:2] - size[:2]), 0.0])
            box = geometry.Box(lo, lo + size)
            if not geometry.point_in_boxes(
                geometry.Room(dims, (box,)), rig, OBSTACLE_MARGIN_M
            ).any():
                boxes.append(box)
                break
    return tuple(boxes)


def _sample_windows(
    rng: np.random.Generator, dims: np.ndarray, prob: float
) -> tuple[geometry.Window, ...]:
    """At most one window per wall, each with probability ``prob``, in canonical metres."""
    windows = []
    for wall in (geometry.WALL_X0, geometry.WALL_X1, geometry.WALL_Y0, geometry.WALL_Y1):
        if rng.random() >= prob:
            continue
        length = dims[1] if wall < geometry.WALL_Y0 else dims[0]  # x walls run along y.
        width = min(rng.uniform(*WINDOW_WIDTH_M), length - 0.4)
        # max(): with the width cut to length - 0.4, rounding can put the bound just below 0.2.
        start = rng.uniform(0.2, max(0.2, length - 0.2 - width))
        sill = rng.uniform(*WINDOW_SILL_M)
        height = min(rng.uniform(*WINDOW_HEIGHT_M), dims[2] - 0.2 - sill)
        windows.append(
            geometry.Window(
                wall,
                np.array([start, sill]),
                np.array([start + width, sill + height]),
                float(rng.uniform(*WINDOW_OUTSIDE_M)),
            )
        )
    return tuple(windows)


def sample_scene(rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    """A random scene drawn from ``cfg``'s ranges (see the module docstring for the scale knob)."""
    lowest = cfg.min_room if cfg.min_canonical_room is None else cfg.min_canonical_room
    wd = rng.uniform(max(lowest, MIN_ROOM_M), cfg.max_room, size=2)
    if lowest < cfg.min_room:  # keep the shape one that global_scale can fit in the range
        wd[np.argmax(wd)] = min(wd.max(), wd.min() * cfg.max_room / cfg.min_room)
    dims = np.array([wd[0], wd[1], rng.uniform(*CEILING_RANGE_M)])
    poses = _sample_poses(rng, dims, cfg)
    boxes = _sample_boxes(rng, dims, poses, cfg.max_obstacles)
    room = geometry.Room(dims, boxes)
    textures = render.sample_textures(rng, geometry.NUM_ROOM_SURFACES + len(boxes))
    intr = geometry.Intrinsics.from_fov(cfg.height, cfg.width, cfg.hfov_deg)
    scene = Scene(room, textures, poses, intr, 1.0, float(rng.uniform(*ABSORPTION_RANGE)))
    if cfg.global_scale:
        # Any factor in [lo, hi] keeps both floor dimensions in [min_room, max_room]; log-uniform.
        lo = cfg.min_room / dims[:2].min()
        hi = cfg.max_room / dims[:2].max()
        scene = scene.scaled(float(np.exp(rng.uniform(np.log(min(lo, hi)), np.log(max(lo, hi))))))
    if cfg.window_prob > 0:  # drawn last, so that the rest of the scene is the same without them.
        windows = _sample_windows(rng, dims, cfg.window_prob)
        room = geometry.Room(
            scene.room.dims, scene.room.boxes, tuple(w.scaled(scene.scale) for w in windows)
        )
        outdoor = render.sample_textures(
            rng, len(windows), OUTDOOR_BASE_RANGE, OUTDOOR_PERIOD_SCALE
        )
        scene = dataclasses.replace(scene, room=room, textures=scene.textures + outdoor)
    if cfg.hfov_range_deg is not None:
        hfov = float(rng.uniform(*cfg.hfov_range_deg))
        intr = geometry.Intrinsics.from_fov(cfg.height, cfg.width, hfov)
        scene = dataclasses.replace(scene, intrinsics=intr)
    return scene


def render_frame(
    scene: Scene, frame: int, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray, geometry.RayHits]:
    """RGB [H, W, 3] in [0, 1] and z-depth [H, W] in metres of frame ``frame``, and the hits.

    With ``supersample`` s > 1 each pixel's colour is the mean over an s x s grid of sub-pixel
    rays (the pixel's area); depth and hits are those of the pixel-centre rays.
    """
    pose = scene.poses[frame]
    hits = geometry.cast_rays(scene.room, pose, scene.intrinsics)
    if supersample <= 1:
        return render.shade(hits, scene.textures, scene.scale), hits.depth, hits
    s, k = supersample, scene.intrinsics
    # Sub-pixel j of an s-times finer grid sits at native coordinate (j + 0.5) / s - 0.5.
    fine = geometry.Intrinsics(
        k.fx * s,
        k.fy * s,
        (k.cx + 0.5) * s - 0.5,
        (k.cy + 0.5) * s - 0.5,
        k.width * s,
        k.height * s,
    )
    rgb = render.shade(geometry.cast_rays(scene.room, pose, fine), scene.textures, scene.scale)
    rgb = rgb.reshape(k.height, s, k.width, s, 3).mean(axis=(1, 3))
    return rgb, hits.depth, hits


def sensor_holes(
    hits: geometry.RayHits, min_range: float, max_range: float, rng: np.random.Generator
) -> dict:
    """Depth-camera artefacts as boolean masks [H, W] (True = no return), by cause.

    ``edge``: pixels within a few pixels of an occlusion boundary (a 4-neighbour on another surface
    more than ``DEPTH_EDGE_REL_JUMP`` deeper or shallower), where stereo/ToF sensors lose returns.
    ``range``: outside [min_range, max_range] metres. ``blob``: smooth random low-confidence regions
    covering a random fraction of the image. ``speckle``: isolated random pixels.
    """
    d, s = hits.depth, hits.surface
    h, w = d.shape
    edge = np.zeros(d.shape, dtype=bool)
    for axis in (0, 1):
        a = np.swapaxes(d, 0, axis)
        b = np.swapaxes(s, 0, axis)
        rel_jump = np.abs(a[1:] - a[:-1]) > DEPTH_EDGE_REL_JUMP * np.minimum(a[1:], a[:-1])
        jump = (b[1:] != b[:-1]) & rel_jump
        e = np.swapaxes(edge, 0, axis)
        e[1:] |= jump
        e[:-1] |= jump
    width = int(round(w * EDGE_HOLE_WIDTH_FRAC))
    if width > 1 and edge.any():
        edge = scipy.ndimage.binary_dilation(edge, iterations=width - 1)
    field = rng.random(BLOB_GRID)
    field = scipy.ndimage.zoom(
        field, (h / BLOB_GRID[0], w / BLOB_GRID[1]), order=1, mode="nearest", grid_mode=True
    )[:h, :w]
    blob = field > np.quantile(field, 1.0 - rng.uniform(*BLOB_FRACTION_RANGE))
    return {
        "edge": edge,
        "range": (d < min_range) | (d > max_range),
        "blob": blob,
        "speckle": rng.random(d.shape) < SPECKLE_FRACTION,
    }


def record_echo(
    scene: Scene,
    frame: int,
    cfg: SceneConfig,
    num_samples: int,
    chirp_start: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The [left, right] recording [2, num_samples] of frame ``frame`` (float, full scale = 1)."""
    return acoustics.binaural_echo(
        scene.room.dims,
        scene.poses[frame],
        num_samples=num_samples,
        chirp_start=chirp_start,
        absorption=scene.absorption,
        max_order=cfg.max_order,
        noise_std=cfg.noise_std,
        rng=rng,
        boxes=scene.room.boxes,
    )
