"""Multi-view geometry of self-supervised depth: warping one frame into another (Monodepth2).

A pixel of the target frame with depth D is lifted to 3-D with K⁻¹ (`backproject`), moved into
the source camera with the relative pose T and projected with K (`project`); the source frame is
then sampled there (`bilinear_sample`). Conventions are Monodepth2's (docs/reference.md, "Geometry"):

* pixel (u, v) is column u, row v, at integer pixel centres 0 … W−1, 0 … H−1;
* projection divides by z + 1e-7 and normalises to [−1, 1] as `(u / (W − 1) − 0.5) · 2`;
* sampling uses border padding. Monodepth2 was written for PyTorch 0.4, whose `grid_sample`
  had align_corners=True semantics, which is the inverse of that normalisation: a point that
  projects exactly onto pixel (u, v) samples exactly that pixel. Later PyTorch versions changed
  the default to align_corners=False, which shifts every sample by a fraction of a pixel against
  the normalisation; `align_corners=True` (default) keeps the geometry exact, `False` reproduces
  running the upstream code on a new PyTorch.

All functions are pure, batched and NHWC; poses are 4×4 matrices mapping target-camera points to
source-camera points (Monodepth2's `cam_T_cam`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

# Guards a division by the projected depth (Monodepth2's Project3D eps).
PROJECT_EPS = 1e-7


def disp_to_depth(disp: Array, min_depth: float, max_depth: float) -> tuple[Array, Array]:
    """Sigmoid disparity in [0, 1] → (scaled disparity, depth) in [min_depth, max_depth].

    Monodepth2: `scaled = 1/max + (1/min − 1/max) · disp; depth = 1/scaled` (docs/reference.md;
    min 0.1, max 100 in the paper configs). Any shape.
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1.0 / scaled


def scale_intrinsics(K: Array, scale: int) -> Array:
    """Intrinsics `[B, 3, 3]` of the full image → those of pyramid level `scale` (size / 2^scale).

    fx, fy, cx, cy are divided by 2^scale, as Monodepth2 builds K for each scale from the
    normalised intrinsics times the level's width and height.
    """
    factor = jnp.asarray([1.0 / 2**scale, 1.0 / 2**scale, 1.0], K.dtype)
    return K * factor[:, None]


def inverse_3x3(M: Array) -> Array:
    """Inverse of 3×3 matrices `[..., 3, 3]` (e.g. K⁻¹) in closed form.

    Elementwise cofactors instead of `jnp.linalg.inv`, whose batched LU does not accept a batch
    axis sharded over devices under explicit sharding (and is slower for 3×3).
    """

    def cross(a: Array, b: Array) -> Array:
        return jnp.stack(
            [
                a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0],
            ],
            axis=-1,
        )

    r0, r1, r2 = M[..., 0, :], M[..., 1, :], M[..., 2, :]
    c0, c1, c2 = cross(r1, r2), cross(r2, r0), cross(r0, r1)
    det = jnp.sum(r0 * c0, axis=-1)[..., None, None]
    return jnp.stack([c0, c1, c2], axis=-1) / det


def pixel_grid(height: int, width: int) -> Array:
    """Homogeneous pixel coordinates `[H, W, 3]` = (u, v, 1), u the column, v the row."""
    v, u = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    return jnp.stack([u, v, jnp.ones_like(u)], axis=-1)


def backproject(depth: Array, inv_K: Array) -> Array:
    """Depth `[..., H, W]`, K⁻¹ `[..., 3, 3]` → camera points `[..., H, W, 3]` = depth · K⁻¹ [u, v, 1].

    Leading dimensions broadcast (e.g. depth `[S, B, H, W]` of S scales with K⁻¹ `[B, 3, 3]`).
    """
    h, w = depth.shape[-2:]
    rays = jnp.einsum("...ij,hwj->...hwi", inv_K, pixel_grid(h, w))
    return depth[..., None] * rays


def project(points: Array, K: Array, T: Array) -> Array:
    """Camera points `[..., H, W, 3]` → source sampling grid `[..., H, W, 2]` (x, y) in [−1, 1].

    `P = (K T)[:3]` applied to the homogeneous points, `xy / (z + 1e-7)`, then
    `(xy / (size − 1) − 0.5) · 2` (Monodepth2's Project3D). K `[..., 3, 3]`, T `[..., 4, 4]`;
    leading dimensions broadcast.
    """
    h, w = points.shape[-3:-1]
    P = jnp.matmul(K, T[..., :3, :])  # = (K₄ T)[:3] with K₄ = diag(K, 1)
    cam = jnp.einsum("...ij,...hwj->...hwi", P[..., :3], points) + P[..., None, None, :, 3]
    xy = cam[..., :2] / (cam[..., 2:3] + PROJECT_EPS)
    size = jnp.asarray([w - 1, h - 1], xy.dtype)
    return (xy / size - 0.5) * 2.0


def bilinear_sample(image: Array, grid: Array, align_corners: bool = True) -> Array:
    """Samples `image [..., H, W, C]` at `grid [..., h, w, 2]` (x, y in [−1, 1]) → `[..., h, w, C]`.

    PyTorch `grid_sample(mode="bilinear", padding_mode="border")` semantics: coordinates outside
    the image are clamped to its border. `align_corners` as in PyTorch (see the module docstring
    for why True is Monodepth2's convention). Leading dimensions of `image` broadcast against
    those of `grid`; only H and W are flattened, so a batch axis sharded over devices stays put.
    """
    h, w, c = image.shape[-3:]
    lead = jnp.broadcast_shapes(image.shape[:-3], grid.shape[:-3])
    gx, gy = grid[..., 0], grid[..., 1]
    if align_corners:
        x = (gx + 1.0) * 0.5 * (w - 1)
        y = (gy + 1.0) * 0.5 * (h - 1)
    else:
        x = ((gx + 1.0) * w - 1.0) * 0.5
        y = ((gy + 1.0) * h - 1.0) * 0.5
    # Border padding clamps the coordinate itself (so the gradient is zero outside the image).
    x = jnp.clip(x, 0.0, w - 1)
    y = jnp.clip(y, 0.0, h - 1)
    x0 = jnp.floor(x)
    y0 = jnp.floor(y)
    fx = (x - x0)[..., None].astype(image.dtype)
    fy = (y - y0)[..., None].astype(image.dtype)
    x0i = x0.astype(jnp.int32)
    y0i = y0.astype(jnp.int32)
    x1i = jnp.minimum(x0i + 1, w - 1)
    y1i = jnp.minimum(y0i + 1, h - 1)
    out_hw = grid.shape[-3:-1]
    flat = jnp.broadcast_to(image, lead + (h, w, c)).reshape(lead + (h * w, c))

    def gather(yi: Array, xi: Array) -> Array:
        idx = jnp.broadcast_to(yi * w + xi, lead + out_hw).reshape(lead + (-1, 1))
        return jnp.take_along_axis(flat, idx, axis=-2).reshape(lead + out_hw + (c,))

    top = gather(y0i, x0i) * (1 - fx) + gather(y0i, x1i) * fx
    bottom = gather(y1i, x0i) * (1 - fx) + gather(y1i, x1i) * fx
    return top * (1 - fy) + bottom * fy


def rot_from_axisangle(vec: Array) -> Array:
    """Axis-angle `[B, 3]` (direction = axis, norm = angle in radians) → rotation `[B, 4, 4]`.

    Rodrigues' formula `R = I + sin θ/θ [v]× + (1 − cos θ)/θ² [v]×²`, the same rotation as
    Monodepth2's `rot_from_axisangle` (which normalises the axis by θ + 1e-7). Written with sinc so
    that it is exact and differentiable at v = 0, where a pose network's output starts.
    """
    # θ with a zero (not NaN) gradient at v = 0; the sinc factors carry the true derivative.
    sq = jnp.sum(vec * vec, axis=-1)
    angle = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    a = jnp.sinc(angle / jnp.pi)  # sin θ / θ
    b = 0.5 * jnp.sinc(angle / (2 * jnp.pi)) ** 2  # (1 − cos θ) / θ²
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    zero = jnp.zeros_like(x)
    cross = jnp.stack(
        [jnp.stack([zero, -z, y], -1), jnp.stack([z, zero, -x], -1), jnp.stack([-y, x, zero], -1)],
        -2,
    )
    eye = jnp.eye(3, dtype=vec.dtype)
    rot = eye + a[..., None, None] * cross + b[..., None, None] * (cross @ cross)
    return homogeneous(rot, jnp.zeros_like(vec))


def homogeneous(R: Array, t: Array) -> Array:
    """`[[R, t], [0, 1]]` `[..., 4, 4]` from R `[..., 3, 3]` and t `[..., 3]`.

    Built by concatenation (no scatter into a fresh array), so a batch axis sharded over devices
    keeps its sharding.
    """
    top = jnp.concatenate([R, t[..., None]], axis=-1)
    bottom = jnp.concatenate([jnp.zeros_like(t), jnp.ones_like(t[..., :1])], axis=-1)
    return jnp.concatenate([top, bottom[..., None, :]], axis=-2)


def translation_matrix(t: Array) -> Array:
    """Translation `[B, 3]` → homogeneous `[B, 4, 4]`."""
    eye = jnp.broadcast_to(jnp.eye(3, dtype=t.dtype), t.shape[:-1] + (3, 3))
    return homogeneous(eye, t)


def transformation_from_parameters(
    axisangle: Array, translation: Array, invert: bool = False
) -> Array:
    """PoseNet output → 4×4 transform `[B, 4, 4]` = Trans(t) · R, or its inverse.

    The pose network sees frames in temporal order, so for the previous frame (−1) its output maps
    −1 → 0 and Monodepth2 inverts it: `Rᵀ · Trans(−t)` (the exact inverse of `Trans(t) · R`).
    """
    R = rot_from_axisangle(axisangle)
    if invert:
        R = jnp.swapaxes(R, -1, -2)
        return jnp.matmul(R, translation_matrix(-translation))
    return jnp.matmul(translation_matrix(translation), R)


def warp(
    source: Array, depth: Array, K: Array, inv_K: Array, T: Array, align_corners: bool = True
) -> Array:
    """Source frame `[B, H, W, C]` resampled into the target view given the target's depth.

    depth `[B, H, W]` of the target, K/inv_K `[B, 3, 3]` at this resolution, T `[B, 4, 4]` target →
    source. Returns `[B, H, W, C]`: what the target would look like if it were the source.
    """
    grid = project(backproject(depth, inv_K), K, T)
    return bilinear_sample(source, grid, align_corners)
