"""How far a pose net's motions are from the true ones, in scale-free terms (validation only).

Self-supervised monocular motion has a free scale, so translations are compared by direction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from avs_jax import geometry

Array = jax.Array


def _angle_deg(cos: Array) -> Array:
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def pose_errors(
    axisangle: Array, translation: Array, poses: Array, has_pose: Array
) -> dict[str, Array]:
    """How far the pose net's motions are from the true ones, in scale-free terms (degrees).

    axisangle, translation `[2, B, 3]`: the pose net's outputs for the pairs (−1, 0) and (0, +1),
    each the motion of the pair's first camera into its second; poses `[B, 3, 4, 4]`
    camera-to-world of frames −1, 0, +1 (what the simulator writes, BV1 has none); has_pose `[B]`.
    Returns the mean over both pairs of the samples with poses (NaN if none) of
    `pose_rotation_error_deg`, the angle of R_predᵀ·R_true, and `pose_translation_angle_deg`, the
    angle between the predicted and true translations (their lengths differ by the free scale);
    and, under `weight/<name>`, how many pairs each mean covers (train/loop.py weights the
    validation batches by it).
    A pose net that learnt nothing scores ~90° on the translation angle.
    """
    poses = poses.astype(jnp.float32)
    rot_t = jnp.swapaxes(poses[..., :3, :3], -1, -2)
    # Rigid inverses in closed form (jnp.linalg.inv does not take a batch axis split over devices).
    inv = geometry.homogeneous(rot_t, -(rot_t @ poses[..., :3, 3:])[..., 0])
    true = jnp.stack([inv[:, 1] @ poses[:, 0], inv[:, 2] @ poses[:, 1]])  # [2, B, 4, 4]
    pred = geometry.transformation_from_parameters(
        axisangle.reshape(-1, 3), translation.reshape(-1, 3)
    ).reshape(true.shape)
    r_rel = jnp.swapaxes(pred[..., :3, :3], -1, -2) @ true[..., :3, :3]
    rot = _angle_deg((jnp.trace(r_rel, axis1=-2, axis2=-1) - 1.0) / 2.0)
    t_pred, t_true = pred[..., :3, 3], true[..., :3, 3]
    norms = jnp.linalg.norm(t_pred, axis=-1) * jnp.linalg.norm(t_true, axis=-1)
    trans = _angle_deg(jnp.sum(t_pred * t_true, axis=-1) / jnp.maximum(norms, 1e-12))
    weight = jnp.broadcast_to(has_pose.astype(jnp.float32), rot.shape)
    n = jnp.sum(weight)

    def mean(x: Array) -> Array:
        return jnp.where(n > 0, jnp.sum(x * weight) / jnp.maximum(n, 1.0), jnp.nan)

    # The counts let the validation mean weight each batch by its pairs with poses (loop.py).
    return {
        "pose_rotation_error_deg": mean(rot),
        "pose_translation_angle_deg": mean(trans),
        "weight/pose_rotation_error_deg": n,
        "weight/pose_translation_angle_deg": n,
    }
