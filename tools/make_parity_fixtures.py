"""Writes the PyTorch parity fixtures of tests/test_import_weights.py (developer tool; needs torch).

Runs the upstream PyTorch code on small random networks and small inputs and saves, per source,
one `.npz` under tests/fixtures/ with the state dict (`sd/<PyTorch key>`), the input (`input`)
and the outputs (`out/<name>`). The tests import the state dict with avs_jax.import_weights,
run our Flax model and compare; they need no torch.

Upstream code (local checkouts passed by path, never committed):
  * torchvision's own `ResNet` (the installed torchvision package), for ResNet-18;
  * Monodepth2's `networks/` (--monodepth2, nianticlabs/monodepth2), which builds its encoders on
    torchvision's ResNet;
  * MiDaS v3.1's `midas/` (--midas, isl-org/MiDaS): `DPTDepthModel(backbone="beitl16_384")` on
    timm's BEiT;
  * ZoeDepth's `zoedepth/` (--zoedepth, isl-org/ZoeDepth): `ZoeDepth` (v1) on that DPT.

Why reduced widths: the full ResNet-18 is 11.7M parameters (45 MB in float32) and BEiT-L 300M,
far over the fixture budget (tests/fixtures/ well under 20 MB; these five files are 7.3 MB).
The upstream classes hard-code their widths (torchvision's 64..512, DPT's 256..1024, Monodepth2's
decoder 16..256), so the script runs them unchanged but swaps the `nn` name those modules see
for a shim whose `Conv2d`, `ConvTranspose2d`, `BatchNorm2d` and `Linear` divide every channel
count that is a multiple of 8 and at least 16 by a factor (8 for the ResNets: widths 8/8/16/32/64,
decoder 2/4/8/16/32; 16 for the DPT: reassemble 16/32/64/64, features 16); the 3- or 6-channel
inputs and the 1-channel disparity / 6·k pose outputs stay. Module structure and names, padding,
strides and forward code are upstream's. The BEiT is timm's, built small through `create_model`
keyword arguments (see `tiny_midas_dpt` for the few compatibility patches). Random BatchNorm
statistics and affine parameters make eval-mode BatchNorm non-trivial; inputs are random.

Environment (this machine; torch CPU 2.13.0 and the torchvision wheel for it, 0.28.0, whose
compiled ops do not load with the CPU torch build: the script stubs out
`torchvision._meta_registrations`, which only registers those ops; the models need none):

    python3 -m venv /work/venv-torch-weights
    /work/venv-torch-weights/bin/pip install numpy torch==2.13.0
    /work/venv-torch-weights/bin/pip install --no-deps torchvision==0.28.0 timm==1.0.29
    /work/venv-torch-weights/bin/pip install pyyaml pillow
    # checkouts, e.g. from git mirrors: git archive HEAD layers.py networks | tar -x -C DIR
    /work/venv-torch-weights/bin/python tools/make_parity_fixtures.py \
        --monodepth2=/tmp/upstream/monodepth2 --midas=/tmp/upstream/MiDaS \
        --zoedepth=/tmp/upstream/ZoeDepth --out=tests/fixtures

Upstream commits the committed fixtures were made from: nianticlabs/monodepth2 b676244e5a1c,
isl-org/MiDaS 454597711a62, isl-org/ZoeDepth d87f17b2f5fd. The output is deterministic (seeded).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

# torchvision's compiled ops do not match the CPU torch build; the models never use them.
sys.modules.setdefault(
    "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
)
import torchvision  # noqa: E402  pylint: disable=wrong-import-position
import torchvision.models.resnet as tv_resnet  # noqa: E402  pylint: disable=wrong-import-position


def make_shim(shrink: int, keep: tuple[int, ...] = ()) -> types.SimpleNamespace:
    """A stand-in for `torch.nn` whose conv/BN/linear layers have `1/shrink` of the channels
    (channel counts in `keep` stay)."""

    def s(c: int) -> int:
        c = int(c)
        return c // shrink if (c >= 16 and c % 8 == 0 and c not in keep) else c

    class Conv2d(torch.nn.Conv2d):
        def __init__(self, in_channels, out_channels, *args, **kwargs):
            super().__init__(s(in_channels), s(out_channels), *args, **kwargs)

    class BatchNorm2d(torch.nn.BatchNorm2d):
        def __init__(self, num_features, *args, **kwargs):
            super().__init__(s(num_features), *args, **kwargs)

    class ConvTranspose2d(torch.nn.ConvTranspose2d):
        def __init__(self, in_channels, out_channels, *args, **kwargs):
            super().__init__(s(in_channels), s(out_channels), *args, **kwargs)

    class Linear(torch.nn.Linear):
        def __init__(self, in_features, out_features, *args, **kwargs):
            super().__init__(s(in_features), s(out_features), *args, **kwargs)

    shim = types.SimpleNamespace(
        **{k: getattr(torch.nn, k) for k in dir(torch.nn) if not k.startswith("_")}
    )
    shim.quantized = torch.nn.quantized
    shim.Conv2d, shim.BatchNorm2d, shim.Linear = Conv2d, BatchNorm2d, Linear
    shim.ConvTranspose2d = ConvTranspose2d
    return shim


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, random BN statistics; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = max(1, int(np.prod(p.shape[1:]))) if p.ndim > 1 else 1
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / np.sqrt(fan_in)))
            elif name.endswith(("weight", "gamma_1", "gamma_2")):
                # Norm scales and BEiT's layer scales near 1, so every branch matters.
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    model.eval()


def state_dict_arrays(model: torch.nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    return {f"sd/{prefix}{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()}


def resnet18_fixture(shrink: int, out: Path) -> None:
    """torchvision ResNet-18 (reduced widths) -> its feature pyramid (as Monodepth2 takes it)."""
    tv_resnet.nn = make_shim(shrink)
    torch.manual_seed(0)
    # A 10-class head keeps the (skipped) fc small; it is still there to be reported.
    model = tv_resnet.resnet18(num_classes=10)
    randomize(model, 1)
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feats = []
        y = model.relu(model.bn1(model.conv1(x)))
        feats.append(y)
        y = model.maxpool(y)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            y = layer(y)
            feats.append(y)
    arrays = state_dict_arrays(model)
    arrays["input"] = x.permute(0, 2, 3, 1).numpy()
    for i, f in enumerate(feats):
        arrays[f"out/feature{i}"] = f.permute(0, 2, 3, 1).numpy()
    np.savez_compressed(out / "resnet18.npz", **arrays)
    print("resnet18:", {k: v.shape for k, v in arrays.items() if not k.startswith("sd/")})


def load_from_path(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_ORIGINAL_MAKE_BEIT_BACKBONE = []


def tiny_midas_dpt(
    root: Path,
    shrink: int,
    embed_dim: int,
    depth: int,
    heads: int,
    train_size: int,
    keep: tuple[int, ...] = (),
) -> torch.nn.Module:
    """MiDaS v3.1 `DPTDepthModel(backbone="beitl16_384")` from the checkout, made tiny.

    Changes, all from outside the upstream code: (1) the channel shim in MiDaS's own modules
    (reassemble, scratch, fusion, head: 1024/512/256 channels / `shrink`); (2) timm's
    `create_model` called with a small BEiT (`embed_dim` = 1024 / shrink, `depth` blocks,
    `heads`, `train_size` px, i.e. a (train_size/16)² position table); (3) hooks (0, 1, 2, 3)
    instead of (5, 11, 17, 23), so a 5-block BEiT has one block after the last hook (it and the
    final norm do not reach the output, and the importer must skip them); (4) timm >= 0.9 names
    the stochastic depth `drop_path1/2`, MiDaS's patched block forward calls `drop_path`: set to
    identity (what it is in eval mode).
    """
    sys.path.insert(0, str(root))
    import timm  # pylint: disable=import-outside-toplevel
    from midas import blocks as m_blocks  # pylint: disable=import-outside-toplevel
    from midas import dpt_depth as m_dpt  # pylint: disable=import-outside-toplevel
    from midas.backbones import beit as m_beit  # pylint: disable=import-outside-toplevel
    from midas.backbones import utils as m_utils  # pylint: disable=import-outside-toplevel

    shim = make_shim(shrink, keep)
    for module in (m_blocks, m_dpt, m_utils):
        module.nn = shim
    assert embed_dim == 1024 // shrink, "the reassemble convs see vit_features=1024 / shrink"

    def create_model(name, pretrained=False):
        return timm.create_model(
            name,
            pretrained=False,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=heads,
            img_size=train_size,
            num_classes=10,
        )

    m_beit.timm = types.SimpleNamespace(create_model=create_model)
    if not _ORIGINAL_MAKE_BEIT_BACKBONE:
        _ORIGINAL_MAKE_BEIT_BACKBONE.append(m_beit._make_beit_backbone)  # pylint: disable=W0212
    make_backbone = _ORIGINAL_MAKE_BEIT_BACKBONE[0]

    def small_hooks(model, **kwargs):
        backbone = make_backbone(model, **{**kwargs, "hooks": [0, 1, 2, 3]})
        for block in backbone.model.blocks:
            block.drop_path = torch.nn.Identity()
        return backbone

    m_beit._make_beit_backbone = small_hooks  # pylint: disable=protected-access
    return m_dpt.DPTDepthModel(path=None, backbone="beitl16_384", non_negative=True)


def midas_outputs(model: torch.nn.Module, x_norm: torch.Tensor) -> dict[str, np.ndarray]:
    """Relative depth and the intermediate maps ZoeDepth reads (hooks), NHWC."""
    got = {}
    hooks = [
        model.scratch.layer4_rn.register_forward_hook(lambda m, i, o: got.__setitem__("l4_rn", o))
    ]
    for k in range(1, 5):
        hooks.append(
            getattr(model.scratch, f"refinenet{k}").register_forward_hook(
                lambda m, i, o, k=k: got.__setitem__(f"r{k}", o)
            )
        )
    hooks.append(
        model.scratch.output_conv[3].register_forward_hook(
            lambda m, i, o: got.__setitem__("out_conv", o.clone())
        )
    )
    with torch.no_grad():
        rel = model(x_norm)
    for h in hooks:
        h.remove()
    out = {k: v.permute(0, 2, 3, 1).numpy() for k, v in got.items()}
    out["rel_depth"] = rel[..., None].numpy()
    return out


def midas_fixture(root: Path, out: Path) -> None:
    """Tiny BEiT DPT trained at 64×64 (4×4 table) run on 64×96 (4×6 grid): the importer's table
    interpolation must match MiDaS's run-time interpolation."""
    model = tiny_midas_dpt(root, shrink=16, embed_dim=64, depth=5, heads=4, train_size=64)
    randomize(model, 10)
    img = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(11))
    outs = midas_outputs(model, (img - 0.5) / 0.5)  # MiDaS sees [-1, 1] (ZoeDepth's transform)
    arrays = state_dict_arrays(model)
    arrays["input"] = img.permute(0, 2, 3, 1).numpy()
    arrays.update({f"out/{k}": v for k, v in outs.items()})
    np.savez_compressed(out / "midas_dpt.npz", **arrays)
    print("midas_dpt:", {k: v.shape for k, v in arrays.items() if not k.startswith("sd/")})


def zoedepth_fixture(midas_root: Path, zoe_root: Path, out: Path) -> None:
    """ZoeDepth v1 (metric bins head, config_zoedepth.json's attractor/temperature settings) on
    the tiny MiDaS of `midas_fixture`, built from the checkout without torch.hub: `MidasCore`
    wraps our tiny DPT directly (no resizing, `do_resize=False`), its `output_channels` set to
    the tiny DPT's width. ZoeDepth hard-codes MiDaS's 32-channel `out_conv`
    (N_MIDAS_OUT), so that head width is kept. n_bins and bin_embedding_dim are small
    constructor arguments; the MLP widths are ZoeDepth's defaults (256 seed, 128 others)."""
    model = tiny_midas_dpt(
        midas_root, shrink=16, embed_dim=64, depth=5, heads=4, train_size=64, keep=(32,)
    )
    sys.path.insert(0, str(zoe_root))
    from zoedepth.models.base_models.midas import MidasCore  # pylint: disable=C0415
    from zoedepth.models.zoedepth.zoedepth_v1 import ZoeDepth  # pylint: disable=C0415

    core = MidasCore(
        model,
        trainable=False,
        fetch_features=True,
        freeze_bn=True,
        keep_aspect_ratio=False,
        img_size=[64, 96],
        do_resize=False,
    )
    core.output_channels = [model.scratch.layer1_rn.out_channels] * 5
    zoe = ZoeDepth(
        core,
        n_bins=16,
        bin_centers_type="softplus",
        bin_embedding_dim=16,
        min_depth=1e-3,
        max_depth=10.0,
        n_attractors=[16, 8, 4, 1],
        attractor_alpha=1000,
        attractor_gamma=2,
        attractor_kind="mean",
        attractor_type="inv",
        min_temp=0.0212,
        max_temp=50,
    )
    randomize(zoe, 12)
    img = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(13))
    got = {}
    handle = model.register_forward_hook(lambda m, i, o: got.__setitem__("rel", o))
    with torch.no_grad():
        res = zoe(img, return_final_centers=True, return_probs=True)
    handle.remove()
    arrays = state_dict_arrays(zoe)
    arrays["input"] = img.permute(0, 2, 3, 1).numpy()
    arrays["out/metric_depth"] = res["metric_depth"].permute(0, 2, 3, 1).numpy()
    arrays["out/bin_centers"] = res["bin_centers"].permute(0, 2, 3, 1).numpy()
    arrays["out/probs"] = res["probs"].permute(0, 2, 3, 1).numpy()
    arrays["out/rel_depth"] = got["rel"][..., None].numpy()
    np.savez_compressed(out / "zoedepth.npz", **arrays)
    print("zoedepth:", {k: v.shape for k, v in arrays.items() if not k.startswith("sd/")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/fixtures")
    parser.add_argument("--shrink", type=int, default=8)
    parser.add_argument("--monodepth2", default=None, help="checkout of nianticlabs/monodepth2")
    parser.add_argument("--midas", default=None, help="checkout of isl-org/MiDaS")
    parser.add_argument("--zoedepth", default=None, help="checkout of isl-org/ZoeDepth")
    parser.add_argument("--only", default="resnet18,monodepth2,midas_dpt,zoedepth")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("torch", torch.__version__, "torchvision", torchvision.__version__)
    only = args.only.split(",")
    if "resnet18" in only:
        resnet18_fixture(args.shrink, out)
    if "monodepth2" in only and args.monodepth2:
        monodepth2_fixture(Path(args.monodepth2), args.shrink, out)
    if "midas_dpt" in only and args.midas:
        midas_fixture(Path(args.midas), out)
    if "zoedepth" in only and args.midas and args.zoedepth:
        zoedepth_fixture(Path(args.midas), Path(args.zoedepth), out)


def monodepth2_fixture(root: Path, shrink: int, out: Path) -> None:
    """Monodepth2 ResnetEncoder + DepthDecoder, and pose ResnetEncoder(2 images) + PoseDecoder.

    Runs the checkout's `networks` package (its encoders on torchvision's ResNet) with the
    channel shim in every module that builds layers; the decoders get the encoder's unshrunk
    `num_ch_enc` (64, 64, 128, 256, 512) so that the shim shrinks their concatenations
    consistently (decoder channels 2/4/8/16/32, pose hidden 32, pose outputs 12 = 2 frames).
    """
    sys.path.insert(0, str(root))
    import layers as md_layers  # noqa: E402  pylint: disable=import-outside-toplevel
    import networks  # noqa: E402  pylint: disable=import-outside-toplevel
    from networks import depth_decoder, pose_decoder, resnet_encoder  # noqa: E402

    shim = make_shim(shrink)
    for module in (tv_resnet, md_layers, depth_decoder, pose_decoder, resnet_encoder):
        module.nn = shim
    g = torch.Generator().manual_seed(5)

    encoder = networks.ResnetEncoder(18, False)
    encoder.encoder.fc = torch.nn.Linear(encoder.encoder.fc.in_features, 10)  # small, skipped
    decoder = networks.DepthDecoder(encoder.num_ch_enc, scales=range(4))
    randomize(encoder, 6)
    randomize(decoder, 7)
    x = torch.rand(1, 3, 64, 96, generator=g)
    with torch.no_grad():
        disps = decoder(encoder(x))
    arrays = state_dict_arrays(encoder)
    arrays.update(state_dict_arrays(decoder))
    # Released encoder.pth files also carry the training resolution; they must be skipped.
    arrays.update(
        {
            "sd/height": np.asarray(192),
            "sd/width": np.asarray(640),
            "sd/use_stereo": np.asarray(False),
        }
    )
    arrays["input"] = x.permute(0, 2, 3, 1).numpy()
    for s in range(4):
        arrays[f"out/disp{s}"] = disps[("disp", s)].permute(0, 2, 3, 1).numpy()
    np.savez_compressed(out / "monodepth2_depth.npz", **arrays)
    print("monodepth2 depth:", {k: v.shape for k, v in arrays.items() if not k.startswith("sd/")})

    pose_encoder = networks.ResnetEncoder(18, False, num_input_images=2)
    pose_encoder.encoder.fc = torch.nn.Linear(pose_encoder.encoder.fc.in_features, 10)
    pose = networks.PoseDecoder(
        pose_encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2
    )
    randomize(pose_encoder, 8)
    randomize(pose, 9)
    pair = torch.rand(2, 6, 64, 96, generator=g)
    with torch.no_grad():
        axisangle, translation = pose([pose_encoder(pair)])
    arrays = state_dict_arrays(pose_encoder)
    arrays.update(state_dict_arrays(pose))
    arrays["input"] = pair.permute(0, 2, 3, 1).numpy()
    arrays["out/axisangle"] = axisangle[:, :, 0].numpy()  # [B, frames, 3]
    arrays["out/translation"] = translation[:, :, 0].numpy()
    np.savez_compressed(out / "monodepth2_pose.npz", **arrays)
    print("monodepth2 pose:", {k: v.shape for k, v in arrays.items() if not k.startswith("sd/")})


if __name__ == "__main__":
    main()
