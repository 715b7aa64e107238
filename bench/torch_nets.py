"""PyTorch twins of our JAX networks and losses, for the side-by-side train-step benchmark only.

Issues 5 and 6 ask for our JAX train steps to be timed against "the same network in PyTorch on
the same machine"; this module is that network, written for the benchmark (no upstream code), so
that the comparison is like-for-like: the same layers, widths, FLOPs and loss computations as
avs_jax/models/{resnet,midas,metric_bins,cross_attention,avsnet,depthnet,posenet}.py and
avs_jax/losses/{silog,photometric}.py, with the same "tiny" and "paper" presets
(`AVSNET_SIZES`, `MONODEPTH2_SIZES`, read from avs_jax/models/avsnet.py:default_model_config
and configs/monodepth2.py when this module is imported).

torch is imported here at the top on purpose: only bench/ code imports this module, and the
library never depends on torch. Tensors are NCHW (PyTorch's layout); batches arrive as the
benchmark's own random data.

Conventions (docs/reference.md): every MiDaS/ZoeDepth resize is bilinear with align_corners=True;
Monodepth2's disparities are upsampled with align_corners=False and sampled with border padding
(align_corners=True, the JAX config default `config.loss.align_corners`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# Size presets: read from the JAX model configs, so that the twins cannot drift from them.

BENCH_BATCH = {"avsnet": {"paper": 2, "tiny": 2}, "monodepth2": {"paper": 12, "tiny": 2}}


def _avsnet_preset(size: str) -> dict:
    """avs_jax/models/avsnet.py:default_model_config(size) as the twin's keyword arguments."""
    from avs_jax.models.avsnet import default_model_config  # noqa: PLC0415

    c = default_model_config(size)
    m, b = c.midas, c.bins
    return dict(
        image_size=tuple(m.image_size),
        embed_dim=m.embed_dim,
        depth=m.depth,
        num_heads=m.num_heads,
        patch_size=m.patch_size,
        hooks=tuple(m.hooks),
        reassemble_features=tuple(m.reassemble_features),
        features=m.features,
        head_features=m.head_features,
        echo_widths=tuple(c.echo.widths),
        echo_blocks=tuple(c.echo.blocks),
        attention_heads=c.attention.num_heads,
        n_bins=b.n_bins,
        bin_embedding_dim=b.bin_embedding_dim,
        seed_mlp_dim=b.seed_mlp_dim,
        mlp_dim=b.mlp_dim,
        batch=BENCH_BATCH["avsnet"][size],
    )


def _avsnet_common() -> dict:
    """The settings both AVS-Net sizes share (ZoeDepth's config values)."""
    from avs_jax.models.avsnet import default_model_config  # noqa: PLC0415

    c = default_model_config("paper")
    m, b = c.midas, c.bins
    return dict(
        mlp_ratio=m.mlp_ratio,
        layer_scale_init=m.layer_scale_init,
        n_attractors=tuple(b.n_attractors),
        attractor_alpha=b.attractor_alpha,
        attractor_gamma=b.attractor_gamma,
        min_temp=b.min_temp,
        max_temp=b.max_temp,
        min_depth=c.min_depth,
        max_depth=c.max_depth,
    )


def _monodepth2_preset(size: str) -> dict:
    """configs/monodepth2.py[:tiny] (model, image size) as the twin's keyword arguments."""
    from avs_jax.config_files import load_config  # noqa: PLC0415

    c = load_config("monodepth2", "tiny" if size == "tiny" else "")
    m = c.model
    return dict(
        image_size=tuple(c.data.image_size),
        batch=BENCH_BATCH["monodepth2"][size],
        encoder_widths=tuple(m.encoder_widths),
        encoder_blocks=tuple(m.encoder_blocks),
        decoder_channels=tuple(m.decoder_channels),
        pose_encoder_widths=tuple(m.pose_encoder_widths),
        pose_encoder_blocks=tuple(m.pose_encoder_blocks),
        pose_hidden=m.pose_hidden,
    )


def _monodepth2_common() -> dict:
    from avs_jax.config_files import load_config  # noqa: PLC0415

    c = load_config("monodepth2")
    loss, t = c.loss, c.train
    return dict(
        scales=tuple(c.model.scales),
        min_depth=loss.min_depth,
        max_depth=loss.max_depth,
        ssim_weight=loss.ssim_weight,
        smoothness_weight=loss.smoothness_weight,
        identity_noise=loss.identity_noise,
        lr=t.learning_rate,
        step_size=t.lr_decay_epochs,
        gamma=t.lr_decay_factor,
    )


AVSNET_SIZES = {size: _avsnet_preset(size) for size in ("paper", "tiny")}
AVSNET_COMMON = _avsnet_common()
MONODEPTH2_SIZES = {size: _monodepth2_preset(size) for size in ("paper", "tiny")}
MONODEPTH2_COMMON = _monodepth2_common()

# ZoeDepth training defaults (docs/reference.md).
AVSNET_OPTIM = dict(
    lr=1.61e-4,
    weight_decay=0.01,
    encoder_lr_factor=10.0,
    clip=0.1,
    pct_start=0.7,
    div_factor=1.0,
    final_div_factor=1e4,
    base_momentum=0.85,
    max_momentum=0.95,
)

# Normalisations (docs/reference.md): MiDaS sees [-1, 1]; Monodepth2's encoders (x - 0.45) / 0.225.
MIDAS_MEAN, MIDAS_STD = 0.5, 0.5
MD2_MEAN, MD2_STD = 0.45, 0.225
LN_EPS = 1e-6  # timm BEiT LayerNorm


def resize_ac(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with align_corners=True (MiDaS/ZoeDepth convention); no-op if same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


# --------------------------------------------------------------------------------------------
# ResNet-18 (torchvision structure, configurable widths, blocks and input channels).


class BasicBlock(nn.Module):
    """Two 3x3 convs + BN with a residual; 1x1 strided projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class ResNet18(nn.Module):
    """[B, C_in, H, W] -> features at 1/2, 1/4, 1/8, 1/16, 1/32 with `widths` channels."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 64, 128, 256, 512),
        blocks: Sequence[int] = (2, 2, 2, 2),
        mean: float | None = None,
        std: float | None = None,
    ):
        super().__init__()
        self.mean, self.std = mean, std
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], widths[0]
        for s, (w, n) in enumerate(zip(widths[1:], blocks)):
            layers = []
            for i in range(n):
                layers.append(BasicBlock(cin, w, 2 if (s > 0 and i == 0) else 1))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.mean is not None:
            x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))
        feats = [x]
        x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


# --------------------------------------------------------------------------------------------
# Monodepth2: DepthNet, PoseNet, geometry and the self-supervised loss.


class ConvBlock(nn.Module):
    """Reflection pad 1 + 3x3 conv + ELU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")))


class DepthDecoder(nn.Module):
    """Monodepth2 decoder: ConvBlock, nearest x2, skip concat, ConvBlock; sigmoid disp per scale."""

    def __init__(
        self,
        enc_channels: Sequence[int],
        num_ch_dec: Sequence[int],
        scales: Sequence[int] = (0, 1, 2, 3),
    ):
        super().__init__()
        self.scales = tuple(scales)
        self.num_ch_dec = tuple(num_ch_dec)
        self.up0, self.up1, self.disp = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        cin = enc_channels[-1]
        for i in range(len(num_ch_dec) - 1, -1, -1):
            self.up0[str(i)] = ConvBlock(cin, num_ch_dec[i])
            c = num_ch_dec[i] + (enc_channels[i - 1] if i > 0 else 0)
            self.up1[str(i)] = ConvBlock(c, num_ch_dec[i])
            cin = num_ch_dec[i]
            if i in self.scales:
                self.disp[str(i)] = nn.Conv2d(num_ch_dec[i], 1, 3)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = {}
        x = feats[-1]
        for i in range(len(self.num_ch_dec) - 1, -1, -1):
            x = self.up0[str(i)](x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i > 0:
                x = torch.cat([x, feats[i - 1]], 1)
            x = self.up1[str(i)](x)
            if i in self.scales:
                out[i] = torch.sigmoid(self.disp[str(i)](F.pad(x, (1, 1, 1, 1), mode="reflect")))
        return [out[s] for s in sorted(self.scales)]


class DepthNet(nn.Module):
    """(image [B, 3, H, W] in [0, 1]) -> disparities [B, 1, H/2^s, W/2^s], scale 0 first."""

    def __init__(self, encoder_widths, encoder_blocks, decoder_channels, scales=(0, 1, 2, 3)):
        super().__init__()
        self.encoder = ResNet18(3, encoder_widths, encoder_blocks, MD2_MEAN, MD2_STD)
        self.decoder = DepthDecoder(encoder_widths, decoder_channels, scales)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(image))


class PoseNet(nn.Module):
    """(pair [B, 6, H, W]) -> (axisangle [B, 3], translation [B, 3]); decoder as Monodepth2's."""

    def __init__(self, encoder_widths, encoder_blocks, hidden: int = 256, num_frames: int = 2):
        super().__init__()
        self.encoder = ResNet18(6, encoder_widths, encoder_blocks, MD2_MEAN, MD2_STD)
        c = encoder_widths[-1]
        self.squeeze = nn.Conv2d(c, hidden, 1)
        self.pose_0 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.pose_1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.pose_2 = nn.Conv2d(hidden, 6 * num_frames, 1)
        self.num_frames = num_frames

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(pair)[-1]
        x = F.relu(self.squeeze(x))
        x = F.relu(self.pose_0(x))
        x = F.relu(self.pose_1(x))
        x = self.pose_2(x).mean((2, 3)) * 0.01
        x = x.view(-1, self.num_frames, 6)
        return x[:, 0, :3], x[:, 0, 3:]


def rot_from_axisangle(vec: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle [B, 3] -> homogeneous rotation [B, 4, 4] (axis = v / (|v| + 1e-7))."""
    angle = torch.norm(vec, 2, -1, keepdim=True)
    axis = vec / (angle + 1e-7)
    ca, sa = torch.cos(angle), torch.sin(angle)
    c1 = 1 - ca
    x, y, z = axis[:, 0:1], axis[:, 1:2], axis[:, 2:3]
    xs, ys, zs = x * sa, y * sa, z * sa
    xc, yc, zc = x * c1, y * c1, z * c1
    rows = [
        torch.cat([x * xc + ca, x * yc - zs, z * xc + ys], -1),
        torch.cat([x * yc + zs, y * yc + ca, y * zc - xs], -1),
        torch.cat([z * xc - ys, y * zc + xs, z * zc + ca], -1),
    ]
    r = torch.stack(rows, 1)  # [B, 3, 3]
    out = torch.zeros(vec.shape[0], 4, 4, dtype=vec.dtype, device=vec.device)
    out[:, :3, :3] = r
    out[:, 3, 3] = 1
    return out


def transformation_from_parameters(axisangle, translation, invert: bool = False):
    """4x4 camera motion from axis-angle and translation; inverted for the previous frame."""
    r = rot_from_axisangle(axisangle)
    t = translation.clone()
    if invert:
        r = r.transpose(1, 2)
        t = -t
    tm = torch.eye(4, dtype=t.dtype, device=t.device).repeat(t.shape[0], 1, 1)
    tm[:, :3, 3] = t
    return r @ tm if invert else tm @ r


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel clip((1 - SSIM)/2, 0, 1), 3x3 mean pool on reflection-padded images."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sx = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sy = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sxy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    n = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    d = (mu_x**2 + mu_y**2 + c1) * (sx + sy + c2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def reprojection_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 1, H, W]: 0.85 mean_c SSIM + 0.15 mean_c L1."""
    l1 = (target - pred).abs().mean(1, keepdim=True)
    return ssim_weight * ssim_loss(pred, target).mean(1, keepdim=True) + (1 - ssim_weight) * l1


def smoothness_loss(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of the mean-normalised disparity."""
    disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    gdx = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    gdy = (disp[:, :, :-1] - disp[:, :, 1:]).abs()
    gix = (img[:, :, :, :-1] - img[:, :, :, 1:]).abs().mean(1, keepdim=True)
    giy = (img[:, :, :-1] - img[:, :, 1:]).abs().mean(1, keepdim=True)
    return (gdx * torch.exp(-gix)).mean() + (gdy * torch.exp(-giy)).mean()


def monodepth2_loss(disps, axisangle, translation, frames, K, cfg) -> torch.Tensor:
    """Monodepth2's loss for a triple, as avs_jax/train/relative_task.py:relative_losses.

    disps: per scale [B, 1, H/2^s, W/2^s]; axisangle/translation [2, B, 3] for pairs (-1, 0),
    (0, +1); frames [B, 3, 3, H, W] (frame, channel, H, W) in [0, 1]; K [B, 3, 3].
    Every scale and both sources are warped in one batch, as the JAX task does.
    """
    b, _, _, h, w = frames.shape
    n_scales = len(disps)
    target = frames[:, 1]
    sources = torch.stack([frames[:, 0], frames[:, 2]])  # [2, B, 3, H, W]
    inv_k = torch.linalg.inv(K)
    poses = torch.stack(
        [
            transformation_from_parameters(axisangle[0], translation[0], invert=True),
            transformation_from_parameters(axisangle[1], translation[1], invert=False),
        ]
    )  # [2,B,4,4]
    disp_full = torch.stack(
        [F.interpolate(d, (h, w), mode="bilinear", align_corners=False) for d in disps]
    )[:, :, 0]  # [S, B, H, W]
    min_disp, max_disp = 1 / cfg["max_depth"], 1 / cfg["min_depth"]
    depth = 1 / (min_disp + (max_disp - min_disp) * disp_full)
    # Backproject: depth * K^-1 [u, v, 1].
    # fp32 pixel coordinates on the data's device (under autocast depth may be bf16, which
    # cannot hold pixel indices above 256 exactly).
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=depth.device),
        torch.arange(w, dtype=torch.float32, device=depth.device),
        indexing="ij",
    )
    pix = torch.stack([xs, ys, torch.ones_like(xs)]).view(1, 3, h * w)  # [1, 3, HW]
    cam = (inv_k @ pix) * depth.reshape(n_scales, b, 1, h * w)  # [S, B, 3, HW]
    cam = torch.cat([cam, torch.ones_like(cam[:, :, :1])], 2)  # [S, B, 4, HW]
    # Project with P = (K T)[:3] for both sources.
    k4 = torch.eye(4, dtype=K.dtype, device=K.device).repeat(b, 1, 1)
    k4[:, :3, :3] = K
    proj = (k4[None] @ poses)[:, :, :3]  # [2, B, 3, 4]
    p = proj[None] @ cam[:, None]  # [S, 2, B, 3, HW]
    xy = p[:, :, :, :2] / (p[:, :, :, 2:3] + 1e-7)
    gx = (xy[:, :, :, 0] / (w - 1) - 0.5) * 2
    gy = (xy[:, :, :, 1] / (h - 1) - 0.5) * 2
    grid = torch.stack([gx, gy], -1).view(n_scales * 2 * b, h, w, 2)
    src = sources[None].expand(n_scales, -1, -1, -1, -1, -1).reshape(n_scales * 2 * b, 3, h, w)
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)
    tgt_rep = target[None].expand(n_scales * 2, -1, -1, -1, -1).reshape(-1, 3, h, w)
    reproj = reprojection_loss(warped, tgt_rep, cfg["ssim_weight"]).view(n_scales, 2, b, h, w)
    ident = reprojection_loss(
        sources.reshape(2 * b, 3, h, w), target.repeat(2, 1, 1, 1), cfg["ssim_weight"]
    ).view(1, 2, b, h, w)
    ident = ident.expand(n_scales, -1, -1, -1, -1)
    ident = ident + cfg["identity_noise"] * torch.randn_like(ident)
    combined = torch.cat([ident, reproj], 1)  # [S, 4, B, H, W]
    photo = combined.min(1)[0].mean((1, 2, 3))  # [S]
    total = 0.0
    for s, d in enumerate(disps):
        img = (
            target
            if s == 0
            else F.interpolate(
                target, (h // 2**s, w // 2**s), mode="bilinear", align_corners=False, antialias=True
            )
        )
        total = total + photo[s] + cfg["smoothness_weight"] / 2**s * smoothness_loss(d, img)
    return total / n_scales


def build_monodepth2(size: str = "tiny") -> tuple[dict, dict]:
    """(models {"depth", "pose"}, config) for the preset `size` ("tiny" or "paper")."""
    cfg = {**MONODEPTH2_SIZES[size], **MONODEPTH2_COMMON}
    depth = DepthNet(
        cfg["encoder_widths"], cfg["encoder_blocks"], cfg["decoder_channels"], cfg["scales"]
    )
    pose = PoseNet(cfg["pose_encoder_widths"], cfg["pose_encoder_blocks"], cfg["pose_hidden"])
    return {"depth": depth, "pose": pose}, cfg


def monodepth2_optimizer(models: dict, cfg: dict):
    """Adam 1e-4 with StepLR(15, 0.1) (Monodepth2 options.py)."""
    params = [p for m in models.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg["step_size"], cfg["gamma"])
    return opt, sched


def _autocast(like: torch.Tensor, dtype: torch.dtype | None):
    """torch.autocast on `like`'s device in `dtype`, or a no-op context for dtype None."""
    return torch.autocast(
        like.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
    )


def monodepth2_train_step(
    models: dict,
    optimizer,
    batch: dict,
    cfg: dict | None = None,
    scheduler=None,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """One forward + backward + Adam step on a triple batch; returns the loss.

    batch: `frames` [B, 3, 3, H, W] in [0, 1] (t-20, t, t+20), `intrinsics` [B, 3, 3].
    The pose network sees both pairs as one batch of 2B (as the JAX task does).
    amp_dtype: run the forward pass and loss under torch.autocast in that dtype (PyTorch's
    mixed precision: fp32 weights, bf16 matmuls and convolutions); None = fp32.
    """
    cfg = cfg or {**MONODEPTH2_SIZES["tiny"], **MONODEPTH2_COMMON}
    frames, K = batch["frames"], batch["intrinsics"]
    b = frames.shape[0]
    for m in models.values():
        m.train()
    optimizer.zero_grad(set_to_none=True)
    with _autocast(frames, amp_dtype):
        disps = models["depth"](frames[:, 1])
        pairs = torch.cat(
            [
                torch.cat([frames[:, 0], frames[:, 1]], 1),
                torch.cat([frames[:, 1], frames[:, 2]], 1),
            ],
            0,
        )
        axisangle, translation = models["pose"](pairs)
        loss = monodepth2_loss(
            disps, axisangle.view(2, b, 3), translation.view(2, b, 3), frames, K, cfg
        )
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return float(loss.detach())


# --------------------------------------------------------------------------------------------
# AVS-Net stage 1: BEiT DPT (MiDaS), echo ResNet-18, cross-attention, ZoeDepth metric bins.


def relative_position_index(gh: int, gw: int) -> torch.Tensor:
    """BEiT's [N+1, N+1] index into the [(2gh-1)(2gw-1)+3, heads] relative position table."""
    num = (2 * gh - 1) * (2 * gw - 1) + 3
    yy, xx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    coords = torch.stack([yy.flatten(), xx.flatten()])
    rel = coords[:, :, None] - coords[:, None, :]
    idx = (rel[0] + gh - 1) * (2 * gw - 1) + (rel[1] + gw - 1)
    n = gh * gw
    out = torch.zeros(n + 1, n + 1, dtype=torch.long)
    out[1:, 1:] = idx
    out[0, :] = num - 3
    out[:, 0] = num - 2
    out[0, 0] = num - 1
    return out


class BeitAttention(nn.Module):
    """MHSA with q/v biases (no k bias) and a per-block relative position bias."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int]):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        gh, gw = grid
        self.table = nn.Parameter(torch.zeros((2 * gh - 1) * (2 * gw - 1) + 3, heads))
        self.register_buffer("index", relative_position_index(gh, gw), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, N, dh]
        rel = self.table[self.index.view(-1)].view(n, n, h).permute(2, 0, 1)[None]
        logits = (q * (d // h) ** -0.5) @ k.transpose(-2, -1) + rel
        y = logits.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class BeitBlock(nn.Module):
    """Pre-norm block with layer scale: x + g1 Attn(LN x), x + g2 MLP(LN x)."""

    def __init__(self, dim, heads, grid, mlp_ratio=4.0, init_values=1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = BeitAttention(dim, heads, grid)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Reassemble(nn.Module):
    """Readout project GELU(Linear([tok, cls])), to grid, 1x1 conv, resample by `factor`."""

    def __init__(self, dim, features, factor):
        super().__init__()
        self.readout = nn.Linear(2 * dim, dim)
        self.conv1x1 = nn.Conv2d(dim, features, 1)
        if factor in (4, 2):
            self.resample = nn.ConvTranspose2d(features, features, factor, factor)
        elif factor == 0.5:
            self.resample = nn.Conv2d(features, features, 3, 2, 1)
        else:
            self.resample = nn.Identity()

    def forward(self, tokens, grid):
        b, _, d = tokens.shape
        x = torch.cat([tokens[:, 1:], tokens[:, :1].expand(-1, tokens.shape[1] - 1, -1)], -1)
        x = F.gelu(self.readout(x)).transpose(1, 2).reshape(b, d, *grid)
        return self.resample(self.conv1x1(x))


class RCU(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.conv1 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv2 = nn.Conv2d(f, f, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """out = x + RCU(skip); RCU; bilinear up (align_corners) to `size` or x2; conv1x1."""

    def __init__(self, f, with_skip: bool = True):
        super().__init__()
        # The deepest block has no skip input, hence no first RCU (as the JAX model).
        self.rcu1 = RCU(f) if with_skip else None
        self.rcu2 = RCU(f)
        self.out_conv = nn.Conv2d(f, f, 1)

    def forward(self, x, skip=None, size=None):
        if skip is not None:
            x = x + self.rcu1(skip)
        x = self.rcu2(x)
        size = size or (2 * x.shape[2], 2 * x.shape[3])
        return self.out_conv(resize_ac(x, size))


class MiDaS(nn.Module):
    """BEiT DPT: image [B, 3, H, W] in [0, 1] -> dict l4_rn, r4..r1, out_conv, rel_depth."""

    def __init__(
        self,
        image_size,
        embed_dim,
        depth,
        num_heads,
        patch_size,
        hooks,
        reassemble_features,
        features,
        head_features,
        mlp_ratio=4.0,
        layer_scale_init=1e-5,
        **_,
    ):
        super().__init__()
        self.grid = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.hooks = tuple(hooks)
        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, embed_dim))
        # Blocks after the last hook never reach the output (as in MiDaS and our JAX model).
        self.blocks = nn.ModuleList(
            [
                BeitBlock(embed_dim, num_heads, self.grid, mlp_ratio, layer_scale_init)
                for _ in range(max(hooks) + 1)
            ]
        )
        self.reassemble = nn.ModuleList(
            [Reassemble(embed_dim, c, s) for c, s in zip(reassemble_features, (4, 2, 1, 0.5))]
        )
        self.layer_rn = nn.ModuleList(
            [nn.Conv2d(c, features, 3, 1, 1, bias=False) for c in reassemble_features]
        )
        self.refinenet = nn.ModuleList([FusionBlock(features, i < 3) for i in range(4)])
        self.head_conv1 = nn.Conv2d(features, features // 2, 3, 1, 1)
        self.head_conv2 = nn.Conv2d(features // 2, head_features, 3, 1, 1)
        self.head_conv3 = nn.Conv2d(head_features, 1, 1)

    def encoder_parameters(self):
        """The transformer + reassemble (ZoeDepth trains them at lr / 10)."""
        mods = [self.patch_embed, self.blocks, self.reassemble]
        return [self.cls_token] + [p for m in mods for p in m.parameters()]

    def forward(self, image):
        x = self.patch_embed((image - MIDAS_MEAN) / MIDAS_STD)
        b = x.shape[0]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1)
        hooked = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.hooks:
                hooked.append(x)
        layers = [r(t, self.grid) for r, t in zip(self.reassemble, hooked)]
        rn = [conv(x) for conv, x in zip(self.layer_rn, layers)]
        r4 = self.refinenet[3](rn[3], size=rn[2].shape[2:])
        r3 = self.refinenet[2](r4, rn[2], size=rn[1].shape[2:])
        r2 = self.refinenet[1](r3, rn[1], size=rn[0].shape[2:])
        r1 = self.refinenet[0](r2, rn[0])
        y = self.head_conv1(r1)
        y = resize_ac(y, (2 * y.shape[2], 2 * y.shape[3]))
        out_conv = F.relu(self.head_conv2(y))
        rel = F.relu(self.head_conv3(out_conv))
        return {
            "l4_rn": rn[3],
            "r4": r4,
            "r3": r3,
            "r2": r2,
            "r1": r1,
            "out_conv": out_conv,
            "rel_depth": rel,
        }


class CrossModalAttention(nn.Module):
    """L^{A,V} = out(MHA(Q = f_V, K/V = proj(f_A))) + f_V (paper eq. 1-2)."""

    def __init__(self, c: int, ca: int, heads: int):
        super().__init__()
        self.heads = heads
        self.audio_proj = nn.Linear(ca, c)
        self.query, self.key, self.value, self.out = (nn.Linear(c, c) for _ in range(4))

    def forward(self, f_v, f_a):
        b, c, h, w = f_v.shape
        nh, dh = self.heads, c // self.heads
        q_tok = f_v.flatten(2).transpose(1, 2)
        a_tok = self.audio_proj(f_a.flatten(2).transpose(1, 2))
        q = self.query(q_tok).view(b, -1, nh, dh).transpose(1, 2)
        k = self.key(a_tok).view(b, -1, nh, dh).transpose(1, 2)
        v = self.value(a_tok).view(b, -1, nh, dh).transpose(1, 2)
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(dh)).softmax(-1)
        y = self.out((att @ v).transpose(1, 2).reshape(b, h * w, c))
        return y.transpose(1, 2).reshape(b, c, h, w) + f_v


def _mlp1x1(cin, hidden, cout):
    return nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, cout, 1))


class MetricBinsHead(nn.Module):
    """ZoeDepth's head (softplus centres, unnormed inv attractors, conditional log-binomial)."""

    def __init__(
        self,
        c_bottleneck,
        features,
        head_features,
        n_bins,
        bin_embedding_dim,
        seed_mlp_dim,
        mlp_dim,
        n_attractors,
        attractor_alpha,
        attractor_gamma,
        min_temp,
        max_temp,
        **_,
    ):
        super().__init__()
        self.n_bins, self.alpha, self.gamma = n_bins, attractor_alpha, int(attractor_gamma)
        self.min_temp, self.max_temp = min_temp, max_temp
        e = bin_embedding_dim
        self.seed_regressor = nn.Sequential(
            _mlp1x1(c_bottleneck, seed_mlp_dim, n_bins), nn.Softplus()
        )
        self.seed_projector = _mlp1x1(c_bottleneck, mlp_dim, e)
        self.projectors = nn.ModuleList([_mlp1x1(features, mlp_dim, e) for _ in n_attractors])
        self.attractors = nn.ModuleList(
            [nn.Sequential(_mlp1x1(e, mlp_dim, n), nn.Softplus()) for n in n_attractors]
        )
        cin = head_features + 1 + e
        self.clb = nn.Sequential(
            nn.Conv2d(cin, cin // 2, 1), nn.GELU(), nn.Conv2d(cin // 2, 4, 1), nn.Softplus()
        )
        k = torch.arange(n_bins, dtype=torch.float32)
        nn_, kk = torch.tensor(n_bins - 1.0) + 1e-7, k + 1e-7
        tail = torch.nan_to_num((nn_ - kk) * torch.log(nn_ - kk + 1e-7))
        self.register_buffer(
            "log_c", nn_ * torch.log(nn_) - kk * torch.log(kk) - tail, persistent=False
        )
        self.register_buffer("k", k, persistent=False)

    def forward(self, f_v, blocks, out_conv, rel_depth):
        b = self.seed_regressor(f_v)
        prev = self.seed_projector(f_v)
        for proj, attr, feat in zip(self.projectors, self.attractors, blocks):
            emb = proj(feat)
            size = emb.shape[2:]
            x = emb + resize_ac(prev, size)
            a = attr(x)  # [B, n_a, h, w]
            c = resize_ac(b, size)
            dx = a[:, :, None] - c[:, None]  # [B, n_a, n_bins, h, w]
            b = c + (dx / (1 + self.alpha * dx**self.gamma)).mean(1)
            prev = emb
        size = out_conv.shape[2:]
        z = torch.cat([out_conv, resize_ac(rel_depth, size), resize_ac(prev, size)], 1)
        pt = self.clb(z) + 1e-4
        p = pt[:, 0] / (pt[:, 0] + pt[:, 1])
        t = pt[:, 2] / (pt[:, 2] + pt[:, 3])
        t = (self.max_temp - self.min_temp) * t + self.min_temp
        p, t = p[:, None], t[:, None]
        km1 = self.n_bins - 1.0
        k = self.k.view(1, -1, 1, 1)
        y = (
            self.log_c.view(1, -1, 1, 1)
            + k * torch.log(torch.clamp(p, 1e-4, 1))
            + (km1 - k) * torch.log(torch.clamp(1 - p, 1e-4, 1))
        )
        probs = (y / t).softmax(1)
        centres = resize_ac(b, size)
        depth = (probs * centres).sum(1, keepdim=True)
        return {"metric_depth": depth, "bin_centers": centres, "probs": probs}


class AVSNet(nn.Module):
    """(image [B, 3, H, W] in [0, 1], echo [B, 2, H, W] | None) -> dict with metric_depth."""

    def __init__(self, cfg: dict, use_echo: bool = True):
        super().__init__()
        self.midas = MiDaS(**cfg)
        f = cfg["features"]
        self.conv2 = nn.Conv2d(f, f, 1)
        self.use_echo = use_echo
        if use_echo:
            self.echo_encoder = ResNet18(2, cfg["echo_widths"], cfg["echo_blocks"])
            self.cross_attention = CrossModalAttention(
                f, cfg["echo_widths"][-1], cfg["attention_heads"]
            )
        self.metric_bins = MetricBinsHead(f, **cfg)

    def forward(self, image, echo=None):
        feats = self.midas(image)
        f_v = self.conv2(feats["l4_rn"])
        if self.use_echo:
            f_v = self.cross_attention(f_v, self.echo_encoder(echo)[-1])
        out = self.metric_bins(
            f_v,
            [feats["r4"], feats["r3"], feats["r2"], feats["r1"]],
            feats["out_conv"],
            feats["rel_depth"],
        )
        out["rel_depth"] = feats["rel_depth"]
        return out


def silog_loss(pred, target, alpha=10.0, beta=0.15):
    """10 sqrt(Var_{ddof=1}(g) + 0.15 mean(g)^2), g = log(pred) - log(gt) over gt > 0 (fp32)."""
    if pred.shape[-2:] != target.shape[-2:]:
        pred = resize_ac(pred, target.shape[-2:])
    mask = target > 0
    g = torch.log(pred[:, 0][mask] + 1e-7) - torch.log(target[mask] + 1e-7)
    return alpha * torch.sqrt(g.var(unbiased=True) + beta * g.mean() ** 2)


def build_avsnet(
    size: str = "tiny", image_size: Sequence[int] | None = None, use_echo: bool = True
) -> tuple[AVSNet, dict]:
    """(model, config) for the preset; `image_size` overrides the grid the position tables use."""
    cfg = {**AVSNET_SIZES[size], **AVSNET_COMMON}
    if image_size is not None:
        cfg["image_size"] = tuple(image_size)
    return AVSNet(cfg, use_echo), cfg


def avsnet_optimizer(model: AVSNet, total_steps: int = 10_000, lr: float | None = None):
    """AdamW (wd 0.01), encoder at lr/10, OneCycle (ZoeDepth defaults, docs/reference.md)."""
    o = AVSNET_OPTIM
    lr = lr or o["lr"]
    enc = model.midas.encoder_parameters()
    enc_ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if id(p) not in enc_ids]
    groups = [{"params": enc, "lr": lr / o["encoder_lr_factor"]}, {"params": rest, "lr": lr}]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=o["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=[lr / o["encoder_lr_factor"], lr],
        total_steps=total_steps,
        pct_start=o["pct_start"],
        div_factor=o["div_factor"],
        final_div_factor=o["final_div_factor"],
        cycle_momentum=True,
        base_momentum=o["base_momentum"],
        max_momentum=o["max_momentum"],
    )
    return opt, sched


def avsnet_train_step(
    model: AVSNet, optimizer, batch: dict, scheduler=None, amp_dtype: torch.dtype | None = None
) -> float:
    """One forward + SILog + backward + grad-norm clip 0.1 + AdamW step; returns the loss.

    batch: `image` [B, 3, H, W] in [0, 1], `echo` [B, 2, H, W], `depth` [B, H, W] (0 = invalid).
    amp_dtype: as in monodepth2_train_step; the SILog always runs in fp32.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with _autocast(batch["image"], amp_dtype):
        out = model(batch["image"], batch.get("echo"))
    loss = silog_loss(out["metric_depth"].float(), batch["depth"])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), AVSNET_OPTIM["clip"])
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return float(loss.detach())
