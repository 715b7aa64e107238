"""Monodepth2's PoseNet: a separate ResNet-18 on a pair of frames + a small pose decoder.

Input: two frames concatenated on channels in temporal order, `[B, H, W, 6]`, normalised
`(x − 0.45) / 0.225` like the depth encoder (docs/reference.md). The decoder (docs/reference.md, "Pose
decoder"): 1×1 512→256 "squeeze" + ReLU, two 3×3 256→256 + ReLU, 1×1 → 6 per frame, spatial mean,
× 0.01, split into axis-angle and translation (`rotation_scale` may set the axis-angle's
factor apart: configs/quickstart.py's tiny net from scratch needs it). Parameter names mirror
Monodepth2's pose decoder (`squeeze`, `pose_0`, `pose_1`, `pose_2`); with pairs Monodepth2 builds
the decoder for 2 frames and uses the first, which `num_frames` keeps so released weights import
unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from avs_jax.models.layers import MONODEPTH2_MEAN, MONODEPTH2_STD, Conv, torch_default_init
from avs_jax.models.resnet import ResNet18

Array = jax.Array

# Monodepth2 scales the pose decoder's output by 0.01 so that initial motions are small.
POSE_OUTPUT_SCALE = 0.01


class PoseDecoder(nn.Module):
    """Encoder bottleneck `[B, h, w, C]` → (axisangle, translation), each `[B, num_frames, 3]`."""

    hidden: int = 256
    num_frames: int = 2
    output_scale: float = POSE_OUTPUT_SCALE
    rotation_scale: float = POSE_OUTPUT_SCALE  # the axis-angle's own factor
    dtype: Any = None

    @nn.compact
    def __call__(self, feature: Array) -> tuple[Array, Array]:
        x = nn.relu(
            Conv(self.hidden, 1, dtype=self.dtype, kernel_init=torch_default_init, name="squeeze")(
                feature
            )
        )
        x = nn.relu(
            Conv(
                self.hidden,
                3,
                1,
                1,
                dtype=self.dtype,
                kernel_init=torch_default_init,
                name="pose_0",
            )(x)
        )
        x = nn.relu(
            Conv(
                self.hidden,
                3,
                1,
                1,
                dtype=self.dtype,
                kernel_init=torch_default_init,
                name="pose_1",
            )(x)
        )
        x = Conv(
            6 * self.num_frames, 1, dtype=self.dtype, kernel_init=torch_default_init, name="pose_2"
        )(x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)) * self.output_scale
        x = x.reshape(x.shape[0], self.num_frames, 6)
        # Monodepth2's arithmetic first; the rotation's own factor on top (x1 by default, exact).
        return x[..., :3] * (self.rotation_scale / self.output_scale), x[..., 3:]


class PoseNet(nn.Module):
    """`(pair [B, H, W, 6] in [0, 1], train) -> (axisangle [B, 3], translation [B, 3])`, fp32.

    The motion maps the first frame of the pair to the second (turn it into a 4×4 with
    `geometry.transformation_from_parameters`, inverting it when the first frame is the target).
    """

    encoder_widths: Sequence[int] = (64, 64, 128, 256, 512)
    encoder_blocks: Sequence[int] = (2, 2, 2, 2)
    hidden: int = 256
    num_frames: int = 2
    rotation_scale: float = POSE_OUTPUT_SCALE
    dtype: Any = None

    @nn.compact
    def __call__(self, pair: Array, train: bool) -> tuple[Array, Array]:
        features = ResNet18(
            self.encoder_widths,
            self.encoder_blocks,
            MONODEPTH2_MEAN,
            MONODEPTH2_STD,
            self.dtype,
            name="encoder",
        )(pair, train)
        axisangle, translation = PoseDecoder(
            self.hidden,
            self.num_frames,
            rotation_scale=self.rotation_scale,
            dtype=self.dtype,
            name="decoder",
        )(features[-1])
        return axisangle[:, 0], translation[:, 0]
