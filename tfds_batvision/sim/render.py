"""RGB rendering for the simulator: procedural world-space textures and view-independent shading.

The colour of a pixel is a deterministic function of the surface it hits and of the 3D hit point
(texture) and surface normal (Lambertian light from fixed directions plus ambient). Nothing depends
on the viewing direction or the camera position, so every frame of a sequence sees the same colour
at the same 3D point: warping frame t+20 into frame t with the true depth and pose reproduces it up
to interpolation and encoding error (what the photometric-loss tests rely on).

Texture coordinates are the hit point divided by the scene's scale, so a room scaled by ``s`` with
its camera scaled by ``s`` renders the identical image (the global-scale ambiguity knob).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfds_batvision.sim import geometry

# Light directions (world, pointing towards the light) and weights: a key light from above and a
# weaker fill, so walls of different orientation get different brightness.
_LIGHTS = ((np.array([0.3, 0.5, 1.0]), 0.45), (np.array([-0.7, -0.4, 0.2]), 0.25))
_AMBIENT = 0.35
# Texture periods in scene units (metres at scale 1): coarse checker and two finer sinusoids.
_CHECKER_PERIOD_RANGE = (0.4, 1.2)
_WAVE_PERIOD_RANGE = (0.08, 0.4)
_NUM_WAVES = 3


@dataclasses.dataclass(frozen=True)
class SurfaceTexture:
    """The procedural texture of one surface: base colour [3] and pattern parameters."""

    base: np.ndarray  # [3] RGB in [0, 1].
    accent: np.ndarray  # [3] second colour blended in by the pattern.
    checker_period: float
    checker_phase: np.ndarray  # [3] keeps the product non-zero on planes where one coordinate is 0.
    wave_freq: np.ndarray  # [NUM_WAVES, 3] spatial frequencies (cycles per scene unit).
    wave_phase: np.ndarray  # [NUM_WAVES]


def sample_textures(
    rng: np.random.Generator,
    num_surfaces: int,
    base_range: tuple[float, float] = (0.25, 0.85),
    period_scale: float = 1.0,
) -> tuple[SurfaceTexture, ...]:
    """Random textures, one per surface id (6 room planes, the boxes, then the outdoor planes).

    ``base_range`` bounds the base colour's channels; ``period_scale`` multiplies the pattern
    periods (the outdoors behind a window is brighter and coarser than an indoor wall).
    """
    out = []
    for _ in range(num_surfaces):
        base = rng.uniform(*base_range, size=3)
        accent = np.clip(base + rng.uniform(-0.35, 0.35, size=3), 0.05, 0.95)
        periods = period_scale * rng.uniform(*_WAVE_PERIOD_RANGE, size=(_NUM_WAVES, 1))
        dirs = rng.normal(size=(_NUM_WAVES, 3))
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        out.append(
            SurfaceTexture(
                base,
                accent,
                period_scale * float(rng.uniform(*_CHECKER_PERIOD_RANGE)),
                rng.uniform(0.3, 1.2, size=3),
                dirs / periods,
                rng.uniform(0, 2 * np.pi, size=_NUM_WAVES),
            )
        )
    return tuple(out)


def shade(hits: geometry.RayHits, textures: tuple[SurfaceTexture, ...], scale: float) -> np.ndarray:
    """Colours [H, W, 3] in [0, 1] of ray hits; ``scale`` divides world points into texture units."""
    p = hits.points / scale
    rgb = np.zeros(p.shape)
    light = np.full(p.shape[:-1], _AMBIENT)
    for direction, weight in _LIGHTS:
        d = direction / np.linalg.norm(direction)
        light += weight * np.clip(hits.normals @ d, 0.0, None)
    for sid in np.unique(hits.surface):
        tex = textures[sid]
        m = hits.surface == sid
        q = p[m]
        # Soft 3D checker: smooth enough to interpolate well when frames are warped.
        c = np.prod(np.sin(2 * np.pi * q / tex.checker_period + tex.checker_phase), axis=-1)
        pattern = 0.5 + 0.5 * np.tanh(4.0 * np.cbrt(c))
        waves = np.mean(np.sin(2 * np.pi * q @ tex.wave_freq.T + tex.wave_phase), axis=-1)
        mix = np.clip(0.6 * pattern + 0.4 * (0.5 + 0.5 * waves), 0.0, 1.0)[:, None]
        rgb[m] = (1 - mix) * tex.base + mix * tex.accent
    return np.clip(rgb * light[..., None], 0.0, 1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> uint8 by rounding."""
    return np.round(rgb * 255.0).astype(np.uint8)
