"""ResNet-18 (He et al. 2016) returning its feature pyramid, as Monodepth2's encoder does.

Used three times in AVS-Net: the echo encoder (2 input channels, the binaural STFT), DepthNet's
encoder (3 channels, RGB) and PoseNet's encoder (6 channels, a pair of frames). Parameter names
follow torchvision (`conv1`, `bn1`, `layer1_0`, ..., `downsample_conv`, `downsample_bn`) so that
ImageNet weights import by name.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
from flax import linen as nn

from avs_jax.models.layers import Conv

Array = jax.Array

# torchvision's BatchNorm2d: momentum 0.1 (flax: 0.9 keeps 90% of the running value), eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def batch_norm(train: bool, name: str, dtype: Any = None, zero_init: bool = False) -> nn.BatchNorm:
    """BatchNorm with torchvision's momentum and epsilon; statistics are global under jit."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPS,
        dtype=dtype,
        name=name,
        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
    )


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual; a 1×1 strided projection when the shape changes."""

    features: int
    strides: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """[B, H, W, C] -> [B, H/s, W/s, features]."""
        y = Conv(self.features, 3, self.strides, 1, use_bias=False, dtype=self.dtype, name="conv1")(
            x
        )
        y = nn.relu(batch_norm(train, "bn1", self.dtype)(y))
        y = Conv(self.features, 3, 1, 1, use_bias=False, dtype=self.dtype, name="conv2")(y)
        y = batch_norm(train, "bn2", self.dtype)(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = Conv(
                self.features,
                1,
                self.strides,
                0,
                use_bias=False,
                dtype=self.dtype,
                name="downsample_conv",
            )(x)
            x = batch_norm(train, "downsample_bn", self.dtype)(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """ResNet-18 feature extractor.

    Attributes:
      widths: channels of the stem and the four stages; (64, 64, 128, 256, 512) is ResNet-18,
        smaller values give the tiny CPU variants used in tests.
      blocks: BasicBlocks per stage ((2, 2, 2, 2) for ResNet-18).
      normalize: subtract `mean` and divide by `std` first (Monodepth2: 0.45 / 0.225); None
        leaves the input as it is (the echo STFT).
    """

    widths: Sequence[int] = (64, 64, 128, 256, 512)
    blocks: Sequence[int] = (2, 2, 2, 2)
    mean: float | None = None
    std: float | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> list[Array]:
        """[B, H, W, C_in] -> features at 1/2, 1/4, 1/8, 1/16, 1/32 with `widths` channels."""
        if self.mean is not None:
            x = (x - self.mean) / self.std
        x = Conv(self.widths[0], 7, 2, 3, use_bias=False, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(batch_norm(train, "bn1", self.dtype)(x))
        features = [x]
        # 3×3/2 max pool with padding 1, padded with -inf as PyTorch does.
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage, (width, n) in enumerate(zip(self.widths[1:], self.blocks)):
            for i in range(n):
                strides = 2 if (stage > 0 and i == 0) else 1
                x = BasicBlock(width, strides, self.dtype, name=f"layer{stage + 1}_{i}")(x, train)
            features.append(x)
        return features
