"""AVS-Net stage 1 (paper Sec. 3.1, Fig. 3): pseudo-dense metric depth M_p from RGB and echoes.

Three variants, chosen by `config.model.variant`:

* "rgb_echoes" (AVS-Net): MiDaS DPT -> conv2 on the bottleneck = f_V; ResNet-18 on the binaural
  STFT -> f_A; L^{A,V} = Att(f_V, f_A) + f_V (eq. 1-2) -> ZoeDepth's metric-bins head.
* "rgb" (Only-RGB, i.e. ZoeDepth): the same without the echo branch and the attention.
* "echoes" (echo-only baseline, as BatVision's): ResNet-18 on the STFT and an upsampling conv
  decoder to depth in (min_depth, max_depth) through a sigmoid.

`default_model_config(size)` holds the model defaults ("paper" or "tiny"); `configs/avsnet.py`
composes it with the data and training sections.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from avs_jax.models.cross_attention import CrossModalAttention
from avs_jax.models.layers import Conv, upsample_nearest
from avs_jax.models.metric_bins import MetricBinsHead
from avs_jax.models.midas import MiDaS
from avs_jax.models.resnet import ResNet18

Array = jax.Array

VARIANTS = ("rgb_echoes", "rgb", "echoes")


def default_model_config(size: str = "paper") -> ml_collections.ConfigDict:
    """`config.model` for AVS-Net: "paper" (BEiT-L/16-384 DPT at 256×512) or "tiny" (CPU tests)."""
    if size not in ("paper", "tiny"):
        raise ValueError(f"default_model_config: size must be 'paper' or 'tiny', got {size!r}")
    c = ml_collections.ConfigDict()
    c.variant = "rgb_echoes"
    c.dtype = "float32"  # compute dtype ("bfloat16" on accelerators); parameters stay fp32
    c.min_depth = 1e-3  # ZoeDepth's min_depth
    # ZoeDepth uses 10 m (NYU) / 80 m (KITTI); BV2 depth is valid in (0, 30) m (paper Sec. 4,
    # docs/reference.md), so the bins (and the "normed" bounds, the echo baseline's range) span 30 m.
    c.max_depth = 30.0

    m = c.midas = ml_collections.ConfigDict()
    if size == "paper":
        m.image_size = (256, 512)  # paper Sec. 3.3.1: 256×512 for RGB and depth
        m.embed_dim = 1024  # BEiT-L/16 (MiDaS DPT_BEiT_L_384)
        m.depth = 24
        m.num_heads = 16
        m.patch_size = 16
        m.hooks = (5, 11, 17, 23)
        m.reassemble_features = (256, 512, 1024, 1024)
        m.features = 256
        m.head_features = 32
        m.remat = False  # True trades compute for memory on the 24 blocks
    else:
        m.image_size = (64, 128)
        m.embed_dim = 32
        m.depth = 4
        m.num_heads = 2
        m.patch_size = 16
        m.hooks = (0, 1, 2, 3)
        m.reassemble_features = (8, 16, 32, 32)
        m.features = 32
        m.head_features = 8
        m.remat = False
    m.mlp_ratio = 4.0
    m.layer_scale_init = 1e-5  # BEiT-L init_values (gamma_1, gamma_2)
    m.use_rel_pos_bias = True  # BEiT: relative position bias per block, no absolute embedding
    m.use_abs_pos_emb = False
    # () keeps the ViT/BEiT encoder (DPT); a ResNet's widths (stem + 4 stages) and blocks per
    # stage give MidasNet's convolutional encoder (MiDaS v2.1 / MiDaS_small's layout).
    m.conv_widths = ()
    m.conv_blocks = ()

    e = c.echo = ml_collections.ConfigDict()
    # ResNet-18 on the 2-channel STFT magnitude, raw (no log, no normalisation: BatVision and the
    # paper feed the magnitude as it is).
    e.widths = (64, 64, 128, 256, 512) if size == "paper" else (8, 8, 16, 16, 32)
    e.blocks = (2, 2, 2, 2) if size == "paper" else (1, 1, 1, 1)
    # Optional log(magnitude + log_floor) before the encoder (not in the paper: off by default).
    # The raw STFT spans ~3 decades (direct path ~0.5 full scale, late echoes ~1e-3); a large
    # encoder trained for 5 epochs copes, a tiny one trained for minutes only sees the direct
    # path, so the quickstart turns it on (configs/quickstart.py).
    e.log_magnitude = False
    e.log_floor = 1e-3  # ~ the microphone noise floor's STFT magnitude (noise std 1e-3)

    a = c.attention = ml_collections.ConfigDict()
    # The paper says "multi-head" without a count: 8 heads of 32 channels on the 256-wide f_V.
    a.num_heads = 8 if size == "paper" else 2

    b = c.bins = ml_collections.ConfigDict()  # ZoeDepth config_zoedepth.json values but alpha
    b.n_bins = 64 if size == "paper" else 16
    b.bin_embedding_dim = 128 if size == "paper" else 16
    b.bin_centers_type = "softplus"
    b.n_attractors = (16, 8, 4, 1)
    # What ZoeDepth's released code ran: its config's 1000 is never passed to inv_attractor,
    # whose default is 300 (its published weights were trained with 300); 1000 can be set.
    b.attractor_alpha = 300.0
    b.attractor_gamma = 2
    b.attractor_kind = "mean"
    b.attractor_type = "inv"
    b.min_temp = 0.0212
    b.max_temp = 50.0
    b.seed_mlp_dim = 256 if size == "paper" else 32
    b.mlp_dim = 128 if size == "paper" else 16

    d = c.echo_decoder = ml_collections.ConfigDict()  # "echoes" variant only
    # Monodepth2's decoder widths, from 1/32 back to full resolution, without skips.
    d.channels = (256, 128, 64, 32, 16) if size == "paper" else (32, 16, 16, 8, 8)
    return c


def validate_model_config(c: Any) -> None:
    """Raises ValueError naming the field when `config.model` is inconsistent."""
    if c.variant not in VARIANTS:
        raise ValueError(f"config.model.variant must be one of {VARIANTS}, got {c.variant!r}")
    h, w = c.midas.image_size
    if h % 32 or w % 32:
        raise ValueError(
            f"config.model.midas.image_size {tuple(c.midas.image_size)} must be a "
            "multiple of 32 (DPT's 1/32 level)"
        )
    if not 0 < c.min_depth < c.max_depth:
        raise ValueError(
            f"config.model: need 0 < min_depth < max_depth, got {c.min_depth}, {c.max_depth}"
        )
    widths, blocks = tuple(c.midas.get("conv_widths", ())), tuple(c.midas.get("conv_blocks", ()))
    if (widths or blocks) and (len(widths) != 5 or len(blocks) != 4):
        raise ValueError(
            "config.model.midas: conv_widths needs 5 entries (stem and four stages) and "
            f"conv_blocks 4, got {widths} and {blocks}; () for both keeps the ViT encoder"
        )
    if c.bins.bin_centers_type not in ("softplus", "normed"):
        raise ValueError("config.model.bins.bin_centers_type must be 'softplus' or 'normed'")
    if c.midas.features % c.attention.num_heads:
        raise ValueError("config.model.attention.num_heads must divide config.model.midas.features")


class EchoDepthDecoder(nn.Module):
    """Echo-only depth decoder: per level nearest ×2 up + 3×3 conv (reflect pad) + ELU, no skips.

    The STFT is not spatially aligned with the image, so skip connections from the echo encoder
    would pass time-frequency layout where the decoder needs image layout; BatVision's baseline
    likewise decodes from the bottleneck. Ends with a 3×3 conv and a sigmoid mapped to
    (min_depth, max_depth).
    """

    channels: tuple[int, ...]
    min_depth: float
    max_depth: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        """[B, H/32, W/32, C] -> (depth [B, H, W, 1] metres, sigmoid [B, H, W, 1])."""

        def conv_elu(y: Array, f: int, name: str) -> Array:
            y = jnp.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
            return nn.elu(Conv(f, 3, 1, 0, dtype=self.dtype, name=name)(y))

        for i, f in enumerate(self.channels):
            x = conv_elu(x, f, f"upconv_{i}_0")
            x = conv_elu(upsample_nearest(x, 2), f, f"upconv_{i}_1")
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        s = nn.sigmoid(Conv(1, 3, 1, 0, dtype=self.dtype, name="dispconv")(x).astype(jnp.float32))
        return self.min_depth + (self.max_depth - self.min_depth) * s, s


class AVSNet(nn.Module):
    """AVS-Net stage 1 / Only-RGB / echo-only, by `config.variant` (see module docstring).

    Attributes:
      config: `config.model` (see `default_model_config`).
    """

    config: Any

    @nn.compact
    def __call__(self, image: Array, echo: Array | None, train: bool) -> dict[str, Array]:
        """image [B, H, W, 3] in [0, 1]; echo [B, H, W, 2] STFT magnitude or None ("rgb") ->

        `metric_depth` [B, H, W, 1] metres; `rel_depth` [B, H, W, 1] (MiDaS relative depth, or the
        echo decoder's sigmoid for "echoes"); for the bins variants also `bin_centers`
        [B, H, W, n_bins] and `probs` [B, H, W, n_bins].
        """
        c = self.config
        dtype = jnp.dtype(c.dtype)
        variant = c.variant
        if variant in ("rgb_echoes", "echoes") and echo is None:
            raise ValueError(f"AVSNet variant {variant!r} needs the echo input")
        if variant in ("rgb_echoes", "echoes"):
            # Grad-CAM hook on the STFT itself (avs_jax/evaluation/gradcam.py): an identity
            # unless the caller asks for its activation and gradient.
            self.sow("intermediates", "echo_features", echo)
            echo = self.perturb("echo_features", echo)
            if c.echo.get("log_magnitude", False):
                echo = jnp.log(echo + c.echo.log_floor)
            f_a = ResNet18(
                tuple(c.echo.widths), tuple(c.echo.blocks), dtype=dtype, name="echo_encoder"
            )(echo, train)[-1]
        if variant == "echoes":
            depth, s = EchoDepthDecoder(
                tuple(c.echo_decoder.channels), c.min_depth, c.max_depth, dtype, name="echo_decoder"
            )(f_a)
            return {"metric_depth": depth, "rel_depth": s}

        m = c.midas
        feats = MiDaS(
            tuple(m.image_size),
            m.embed_dim,
            m.depth,
            m.num_heads,
            m.patch_size,
            tuple(m.hooks),
            tuple(m.reassemble_features),
            m.features,
            m.head_features,
            m.mlp_ratio,
            m.layer_scale_init,
            m.use_rel_pos_bias,
            m.use_abs_pos_emb,
            m.remat,
            # .get: the configs of runs saved before the option have neither key.
            tuple(m.get("conv_widths", ())),
            tuple(m.get("conv_blocks", ())),
            dtype,
            name="midas",
        )(image, train)
        bottleneck = feats["l4_rn"]
        # ZoeDepth's `conv2`: the bin features f_V.
        f_v = Conv(bottleneck.shape[-1], 1, dtype=dtype, name="conv2")(bottleneck)
        # Grad-CAM hook on the visual bin features (the last visual feature map before fusion).
        self.sow("intermediates", "visual_features", f_v)
        f_v = self.perturb("visual_features", f_v)
        if variant == "rgb_echoes":
            f_v = CrossModalAttention(c.attention.num_heads, dtype, name="cross_attention")(
                f_v, f_a
            )
        b = c.bins
        out = MetricBinsHead(
            b.n_bins,
            b.bin_embedding_dim,
            b.bin_centers_type,
            tuple(b.n_attractors),
            b.attractor_alpha,
            b.attractor_gamma,
            b.attractor_kind,
            b.attractor_type,
            b.min_temp,
            b.max_temp,
            c.min_depth,
            c.max_depth,
            b.seed_mlp_dim,
            b.mlp_dim,
            dtype,
            name="metric_bins",
        )(
            f_v,
            [feats["r4"], feats["r3"], feats["r2"], feats["r1"]],
            feats["out_conv"],
            feats["rel_depth"],
        )
        out["rel_depth"] = feats["rel_depth"]
        return out
