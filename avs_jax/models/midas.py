"""MiDaS DPT relative depth network (Ranftl et al.), the visual branch of AVS-Net (paper Sec. 3.1).

A ViT/BEiT backbone with hooks after four blocks, DPT's reassemble (readout "project",
resampling to 1/4, 1/8, 1/16, 1/32), fusion blocks and the relative depth head, as
docs/reference.md, "MiDaS DPT_BEiT_L_384" states. Returns what ZoeDepth's metric head reads:
the bottleneck `l4_rn`, the decoder features r4..r1, the head activation `out_conv` and
`rel_depth`.

With `conv_widths` set, a ResNet pyramid (avs_jax/models/resnet.py) takes the place of the
transformer and reassemble: MidasNet's layout (MiDaS v2.1, whose ResNeXt-101 or, in MiDaS_small,
EfficientNet-Lite3 stages at 1/4..1/32 feed the same `layer{i}_rn` convs, fusion blocks and head).
ZoeDepth's MidasCore runs on those cores as well; the quickstart's tiny model uses one
(configs/quickstart.py).

Module and parameter names mirror MiDaS (`encoder` ~ `pretrained`, `layer{i}_rn`,
`refinenet{i}`, `head_*`), so that the weight importer maps them one to one. The encoder
(transformer + reassemble) is what ZoeDepth trains at lr/10 (`param_labels` in the task).

BEiT attention (Bao et al.): per block a learned relative position bias table
`[(2*gh-1)*(2*gw-1) + 3, heads]` (3 extra entries: cls->token, token->cls, cls->cls),
q/v biases without a k bias, and layer-scale gammas `gamma_1`, `gamma_2`. The table is created
for the configured patch grid (`image_size / patch_size`); resizing a pretrained 24×24 table to
another grid is the weight importer's job (MiDaS does it by bilinear interpolation).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from avs_jax.models.layers import Conv, ConvTransposeNonOverlap, resize_bilinear
from avs_jax.models.resnet import ResNet18

Array = jax.Array

# timm's BEiT/ViT LayerNorm epsilon.
LN_EPS = 1e-6
# ZoeDepth maps an image in [0, 1] to [-1, 1] for MiDaS (mean 0.5, std 0.5).
MIDAS_MEAN = 0.5
MIDAS_STD = 0.5


def gelu_exact(x: Array) -> Array:
    """GELU in its exact erf form (PyTorch's `nn.GELU()` default)."""
    return nn.gelu(x, approximate=False)


def relative_position_index(grid: tuple[int, int]) -> np.ndarray:
    """BEiT's index into the relative position bias table, `[N+1, N+1]` for N = gh*gw tokens + cls.

    Token pairs index `(dy + gh - 1) * (2*gw - 1) + (dx + gw - 1)` with `d = pos_q - pos_k`;
    row 0 (cls as query) uses entry T-3, column 0 (cls as key) T-2, and (cls, cls) T-1,
    where T = (2*gh-1)*(2*gw-1) + 3 is the table length.
    """
    gh, gw = grid
    num = (2 * gh - 1) * (2 * gw - 1) + 3
    yy, xx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    coords = np.stack([yy.ravel(), xx.ravel()])  # [2, N]
    rel = coords[:, :, None] - coords[:, None, :]  # [2, N, N]
    idx = (rel[0] + gh - 1) * (2 * gw - 1) + (rel[1] + gw - 1)
    n = gh * gw
    out = np.zeros((n + 1, n + 1), np.int32)
    out[1:, 1:] = idx
    out[0, :] = num - 3
    out[:, 0] = num - 2
    out[0, 0] = num - 1
    return out


class Attention(nn.Module):
    """Multi-head self-attention with BEiT's relative position bias and q/v biases.

    Softmax runs in fp32 whatever the compute dtype.
    """

    num_heads: int
    grid: tuple[int, int]
    use_rel_pos_bias: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """[B, N+1, D] -> [B, N+1, D] (N = gh*gw patch tokens after the cls token)."""
        b, n, d = x.shape
        h = self.num_heads
        dh = d // h
        # timm: qkv Linear without bias, then cat(q_bias, zeros, v_bias) as its bias.
        qkv = nn.Dense(3 * d, use_bias=False, dtype=self.dtype, name="qkv")(x)
        q_bias = self.param("q_bias", nn.initializers.zeros, (d,))
        v_bias = self.param("v_bias", nn.initializers.zeros, (d,))
        qkv = qkv + jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias]).astype(qkv.dtype)
        qkv = qkv.reshape(b, n, 3, h, dh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, H, dh]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * (dh**-0.5), k).astype(jnp.float32)
        if self.use_rel_pos_bias:
            gh, gw = self.grid
            if n != gh * gw + 1:
                raise ValueError(
                    f"Attention: {n - 1} patch tokens but the relative position table was made "
                    f"for a {gh}x{gw} grid; set model.midas.image_size to the input size."
                )
            num = (2 * gh - 1) * (2 * gw - 1) + 3
            table = self.param("relative_position_bias_table", nn.initializers.zeros, (num, h))
            index = relative_position_index(self.grid)
            bias = table[index.reshape(-1)].reshape(n, n, h)
            logits = logits + jnp.transpose(bias, (2, 0, 1))[None].astype(jnp.float32)
        attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        y = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, n, d)
        return nn.Dense(d, dtype=self.dtype, name="proj")(y)


class Block(nn.Module):
    """Pre-norm transformer block with BEiT layer scale: x + g1*Attn(LN(x)), x + g2*MLP(LN(x))."""

    num_heads: int
    grid: tuple[int, int]
    mlp_ratio: float = 4.0
    layer_scale_init: float | None = 1e-5  # BEiT-L's init_values; None: no layer scale (ViT)
    use_rel_pos_bias: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """[B, N+1, D] -> [B, N+1, D]."""
        d = x.shape[-1]
        y = nn.LayerNorm(LN_EPS, dtype=self.dtype, name="norm1")(x)
        y = Attention(self.num_heads, self.grid, self.use_rel_pos_bias, self.dtype, name="attn")(y)
        if self.layer_scale_init is not None:
            y = y * self.param(
                "gamma_1", nn.initializers.constant(self.layer_scale_init), (d,)
            ).astype(y.dtype)
        x = x + y
        y = nn.LayerNorm(LN_EPS, dtype=self.dtype, name="norm2")(x)
        y = nn.Dense(int(d * self.mlp_ratio), dtype=self.dtype, name="mlp_fc1")(y)
        y = nn.Dense(d, dtype=self.dtype, name="mlp_fc2")(gelu_exact(y))
        if self.layer_scale_init is not None:
            y = y * self.param(
                "gamma_2", nn.initializers.constant(self.layer_scale_init), (d,)
            ).astype(y.dtype)
        return x + y


class Reassemble(nn.Module):
    """DPT reassemble of one hooked token sequence to a feature map.

    Readout "project": `GELU(Linear_{2D->D}([token, cls]))`; tokens to the patch grid; 1×1 conv
    D -> `features`; then resampling by `factor`: 4 and 2 by a transposed conv (kernel = stride),
    1 keeps the grid, 0.5 is a 3×3 stride-2 conv, 0.25 a 4×4 stride-4 conv (patch 8 only).
    """

    features: int
    factor: float
    grid: tuple[int, int]
    dtype: Any = None

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        """[B, 1+N, D] -> [B, gh*factor, gw*factor, features]."""
        b, _, d = tokens.shape
        cls = jnp.broadcast_to(tokens[:, :1], tokens[:, 1:].shape)
        x = jnp.concatenate([tokens[:, 1:], cls], axis=-1)
        x = gelu_exact(nn.Dense(d, dtype=self.dtype, name="readout_project")(x))
        x = x.reshape(b, *self.grid, d)
        x = Conv(self.features, 1, dtype=self.dtype, name="conv1x1")(x)
        if self.factor in (4, 2):
            x = ConvTransposeNonOverlap(
                self.features, int(self.factor), dtype=self.dtype, name="resample"
            )(x)
        elif self.factor == 0.5:
            x = Conv(self.features, 3, 2, 1, dtype=self.dtype, name="resample")(x)
        elif self.factor == 0.25:  # patch 8 (not in MiDaS): non-overlapping 4×4 merge to 1/32
            x = Conv(self.features, 4, 4, 0, dtype=self.dtype, name="resample")(x)
        elif self.factor != 1:
            raise ValueError(f"Reassemble: unsupported factor {self.factor}")
        return x


class DPTEncoder(nn.Module):
    """ViT/BEiT backbone plus reassemble: MiDaS's `pretrained` module (ZoeDepth's "encoder").

    Attributes:
      grid: patch grid (image_size // patch_size) the position tables are made for.
      hooks: indices of the blocks whose outputs are reassembled (4 of them).
      reassemble_features: channels at 1/4, 1/8, 1/16, 1/32.
      use_rel_pos_bias / use_abs_pos_emb: BEiT uses the former, plain ViT the latter.
      remat: rematerialise each block in the backward pass (memory for the paper size).
    """

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    grid: tuple[int, int]
    hooks: Sequence[int]
    reassemble_features: Sequence[int]
    mlp_ratio: float = 4.0
    layer_scale_init: float | None = 1e-5
    use_rel_pos_bias: bool = True
    use_abs_pos_emb: bool = False
    remat: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> list[Array]:
        """[B, H, W, 3] normalised image -> 4 maps at 1/4, 1/8, 1/16, 1/32."""
        if not self.hooks or max(self.hooks) >= self.depth:
            raise ValueError(f"DPTEncoder: hooks {tuple(self.hooks)} must lie in [0, {self.depth})")
        p = self.patch_size
        x = Conv(self.embed_dim, p, p, 0, dtype=self.dtype, name="patch_embed")(x)
        b, gh, gw, d = x.shape
        x = x.reshape(b, gh * gw, d)
        cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
        if self.use_abs_pos_emb:
            pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, gh * gw + 1, d))
            x = x + pos.astype(x.dtype)
        block_cls = nn.remat(Block) if self.remat else Block
        outputs = []
        for i in range(max(self.hooks) + 1):
            x = block_cls(
                self.num_heads,
                self.grid,
                self.mlp_ratio,
                self.layer_scale_init,
                self.use_rel_pos_bias,
                self.dtype,
                name=f"blocks_{i}",
            )(x)
            outputs.append(x)
        hooked = [outputs[i] for i in self.hooks]
        # Blocks after the last hook (and the final norm) do not reach the output, as in MiDaS.
        # MiDaS's patch 16: factors 4, 2, 1, 0.5. A smaller patch (patch 8 for small images)
        # scales them down so that the maps still lie at 1/4, 1/8, 1/16, 1/32.
        factors = tuple(f * p / 16 for f in (4, 2, 1, 0.5))
        return [
            Reassemble(f, s, self.grid, self.dtype, name=f"act_postprocess{j + 1}")(t)
            for j, (t, f, s) in enumerate(zip(hooked, self.reassemble_features, factors))
        ]


class ResidualConvUnit(nn.Module):
    """RCU: x + conv3×3(ReLU(conv3×3(ReLU(x)))), with biases (MiDaS, no BatchNorm)."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        f = x.shape[-1]
        y = Conv(f, 3, 1, 1, dtype=self.dtype, name="conv1")(nn.relu(x))
        y = Conv(f, 3, 1, 1, dtype=self.dtype, name="conv2")(nn.relu(y))
        return x + y


class FusionBlock(nn.Module):
    """DPT feature fusion: out = x + RCU(skip); RCU; bilinear up (align_corners); conv1×1."""

    dtype: Any = None

    @nn.compact
    def __call__(
        self, x: Array, skip: Array | None = None, size: tuple[int, int] | None = None
    ) -> Array:
        """[B, h, w, F] (+ skip [B, h, w, F]) -> [B, size or 2h×2w, F]."""
        if skip is not None:
            x = x + ResidualConvUnit(self.dtype, name="resConfUnit1")(skip)
        x = ResidualConvUnit(self.dtype, name="resConfUnit2")(x)
        size = size or (2 * x.shape[1], 2 * x.shape[2])
        x = resize_bilinear(x, size, align_corners=True)
        return Conv(x.shape[-1], 1, dtype=self.dtype, name="out_conv")(x)


class MiDaS(nn.Module):
    """MiDaS relative depth network returning the features ZoeDepth's metric head needs.

    Attributes (all from `config.model.midas`):
      image_size: (H, W) the position tables are made for (the training resolution).
      embed_dim, depth, num_heads, patch_size, mlp_ratio, hooks, layer_scale_init,
      use_rel_pos_bias, use_abs_pos_emb: the ViT/BEiT backbone.
      reassemble_features: [c1..c4] at 1/4, 1/8, 1/16, 1/32.
      features: decoder width F (256 in MiDaS).
      head_features: channels of `out_conv` (32 in MiDaS).
      remat: rematerialise the transformer blocks.
      conv_widths, conv_blocks: () for the ViT/BEiT encoder (DPT); else the widths of a ResNet's
        stem and four stages and its blocks per stage (MidasNet's layout): its stages at 1/4 ..
        1/32 are the four maps, and the transformer and reassemble settings are unused.
    """

    image_size: Sequence[int]
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    hooks: Sequence[int]
    reassemble_features: Sequence[int]
    features: int = 256
    head_features: int = 32
    mlp_ratio: float = 4.0
    layer_scale_init: float | None = 1e-5
    use_rel_pos_bias: bool = True
    use_abs_pos_emb: bool = False
    remat: bool = False
    conv_widths: Sequence[int] = ()
    conv_blocks: Sequence[int] = ()
    dtype: Any = None

    @nn.compact
    def __call__(self, image: Array, train: bool = False) -> dict[str, Array]:
        """image [B, H, W, 3] in [0, 1] (`train`: the conv encoder's BatchNorm uses and updates
        the batch's statistics) ->

        `l4_rn` [B, H/32, W/32, F]; `r4`, `r3`, `r2`, `r1` [B, H/16..H/2, ., F];
        `out_conv` [B, H, W, head_features] (ReLU output of the head's 3×3 conv);
        `rel_depth` [B, H, W, 1] (non-negative, inverse-depth-like).
        """
        ph, pw = self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size
        x = (image - MIDAS_MEAN) / MIDAS_STD
        if self.conv_widths:
            layers = ResNet18(
                tuple(self.conv_widths), tuple(self.conv_blocks), dtype=self.dtype, name="encoder"
            )(x, train)[1:]
        else:
            layers = DPTEncoder(
                self.embed_dim,
                self.depth,
                self.num_heads,
                self.patch_size,
                (ph, pw),
                tuple(self.hooks),
                tuple(self.reassemble_features),
                self.mlp_ratio,
                self.layer_scale_init,
                self.use_rel_pos_bias,
                self.use_abs_pos_emb,
                self.remat,
                self.dtype,
                name="encoder",
            )(x)
        f = self.features
        rn = [
            Conv(f, 3, 1, 1, use_bias=False, dtype=self.dtype, name=f"layer{i + 1}_rn")(layer)
            for i, layer in enumerate(layers)
        ]
        r4 = FusionBlock(self.dtype, name="refinenet4")(rn[3], size=rn[2].shape[1:3])
        r3 = FusionBlock(self.dtype, name="refinenet3")(r4, rn[2], size=rn[1].shape[1:3])
        r2 = FusionBlock(self.dtype, name="refinenet2")(r3, rn[1], size=rn[0].shape[1:3])
        r1 = FusionBlock(self.dtype, name="refinenet1")(r2, rn[0])
        y = Conv(f // 2, 3, 1, 1, dtype=self.dtype, name="head_conv1")(r1)
        y = resize_bilinear(y, (2 * y.shape[1], 2 * y.shape[2]), align_corners=True)
        out_conv = nn.relu(
            Conv(self.head_features, 3, 1, 1, dtype=self.dtype, name="head_conv2")(y)
        )
        rel = nn.relu(Conv(1, 1, dtype=self.dtype, name="head_conv3")(out_conv))
        return {
            "l4_rn": rn[3],
            "r4": r4,
            "r3": r3,
            "r2": r2,
            "r1": r1,
            "out_conv": out_conv,
            "rel_depth": rel,
        }
