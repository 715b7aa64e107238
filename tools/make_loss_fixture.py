"""Writes tests/fixtures/monodepth2_loss.npz: Monodepth2's own training loss on a small case
(developer tool; needs torch and a Monodepth2 checkout, never committed).

Runs upstream `Trainer.generate_images_pred` and `Trainer.compute_losses` (trainer.py) with the
layers of its `layers.py` (disp_to_depth, BackprojectDepth, Project3D,
transformation_from_parameters, SSIM, get_smooth_loss) on random smooth frames, disparities at
four scales and small motions, with the paper's options (scales 0-3, depth 0.1-100, frame ids
0, -1, 1, automasking, SSIM 0.85, smoothness 1e-3, full-resolution multiscale). The fixture holds
the inputs in our layouts and upstream's loss, its per-scale parts and its automask fraction;
tests/test_relative_task.py feeds the same inputs to `relative_losses` and compares.

Two upstream calls are pinned so that the numbers are deterministic and mean what Monodepth2
meant: `F.grid_sample` gets `align_corners=True` (the code was written for PyTorch 0.4.1,
whose grid_sample behaved so; our `config.loss.align_corners`), and the automasking tie-break
noise `torch.randn(...) * 1e-5` is zero (our loss takes rng=None for the same).

Trainer's imports that the two methods do not use (tensorboardX, IPython, six, kitti_utils,
the datasets and networks packages) are stubbed. The target frame at each scale for the smoothness
term comes from the dataloader upstream; here it is a 2x2 mean (any pyramid will do, both sides
get the same one).

    /work/venv-torch-bench/bin/python tools/make_loss_fixture.py \
        --monodepth2=/tmp/upstream/monodepth2 --out=tests/fixtures

Made from nianticlabs/monodepth2 b676244e5a1c; deterministic (seeded).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

B, H, W = 2, 32, 64
SCALES = (0, 1, 2, 3)
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0
SMOOTHNESS = 1e-3


def load_trainer(root: Path) -> types.ModuleType:
    """upstream trainer.py with its unused imports stubbed, `layers` imported from `root`."""
    for name in (
        "tensorboardX",
        "IPython",
        "kitti_utils",
        "datasets",
        "networks",
        "six",
        "six.moves",
    ):
        stub = types.ModuleType(name)
        stub.SummaryWriter = object
        stub.embed = lambda *a, **k: None
        stub.urllib = None
        stub.__all__ = []
        sys.modules[name] = stub
    sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location("md2_trainer", root / "trainer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], waves: int = 4) -> np.ndarray:
    """A sum of random plane waves over the last two axes, in [0, 1]."""
    h, w = shape[-2:]
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros(shape)
    for _ in range(waves):
        k = rng.uniform(0.05, 0.5, size=shape[:-2] + (2,))
        phase = rng.uniform(0, 2 * np.pi, size=shape[:-2])
        out += np.sin(k[..., :1, None] * y + k[..., 1:, None] * x + phase[..., None, None])
    out = (out - out.min()) / (out.max() - out.min())
    return out.astype(np.float32)


def pool2(x: np.ndarray) -> np.ndarray:
    """2x2 mean of `[..., H, W]`."""
    return 0.25 * (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--monodepth2", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    args = parser.parse_args()
    trainer = load_trainer(args.monodepth2)
    layers = sys.modules["layers"]
    rng = np.random.default_rng(7)

    frames = smooth_field(rng, (3, B, 3, H, W), waves=6)  # frame ids -1, 0, 1; NCHW
    pyramid = [frames[1]]
    for _ in SCALES[1:]:
        pyramid.append(pool2(pyramid[-1]))
    disps = [0.05 + 0.5 * smooth_field(rng, (B, 1, H // 2**s, W // 2**s)) for s in SCALES]
    axisangle = rng.normal(scale=0.02, size=(2, B, 3)).astype(np.float32)  # pairs (-1,0), (0,1)
    translation = rng.normal(scale=0.03, size=(2, B, 3)).astype(np.float32)
    K = np.array(
        [[0.58 * W, 0, 0.5 * W, 0], [0, 1.92 * H, 0.5 * H, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
        np.float32,
    )

    opt = types.SimpleNamespace(
        scales=list(SCALES),
        v1_multiscale=False,
        height=H,
        width=W,
        min_depth=MIN_DEPTH,
        max_depth=MAX_DEPTH,
        frame_ids=[0, -1, 1],
        pose_model_type="separate_resnet",
        disable_automasking=False,
        no_ssim=False,
        avg_reprojection=False,
        predictive_mask=False,
        disparity_smoothness=SMOOTHNESS,
    )
    me = types.SimpleNamespace(
        opt=opt,
        num_scales=len(SCALES),
        device="cpu",
        ssim=layers.SSIM(),
        backproject_depth={0: layers.BackprojectDepth(B, H, W)},
        project_3d={0: layers.Project3D(B, H, W)},
    )
    me.compute_reprojection_loss = functools.partial(trainer.Trainer.compute_reprojection_loss, me)

    t = torch.from_numpy
    Kb = t(np.broadcast_to(K, (B, 4, 4)).copy())
    inputs = {("K", 0): Kb, ("inv_K", 0): torch.linalg.inv(Kb)}
    for i, f in enumerate((-1, 0, 1)):
        inputs[("color", f, 0)] = t(frames[i])
    for s in SCALES:
        inputs[("color", 0, s)] = t(pyramid[s])
    outputs = {("disp", s): t(d) for s, d in zip(SCALES, disps)}
    for pair, f in enumerate((-1, 1)):  # Trainer.predict_poses: invert when f < 0
        outputs[("cam_T_cam", 0, f)] = layers.transformation_from_parameters(
            t(axisangle[pair])[:, None], t(translation[pair])[:, None], invert=f < 0
        )

    grid_sample, randn = F.grid_sample, torch.randn
    trainer.F.grid_sample = functools.partial(grid_sample, align_corners=True)
    trainer.torch.randn = lambda *a, **k: torch.zeros(*a)
    try:
        with torch.no_grad():
            trainer.Trainer.generate_images_pred(me, inputs, outputs)
            losses = trainer.Trainer.compute_losses(me, inputs, outputs)
    finally:
        trainer.F.grid_sample, trainer.torch.randn = grid_sample, randn

    smooth = []
    for s in SCALES:
        d = outputs[("disp", s)]
        smooth.append(
            float(
                layers.get_smooth_loss(d / (d.mean((2, 3), True) + 1e-7), inputs[("color", 0, s)])
            )
        )
    per_scale = np.array([float(losses[f"loss/{s}"]) for s in SCALES])
    photometric = per_scale - SMOOTHNESS * np.array(smooth) / 2.0 ** np.arange(len(SCALES))
    automask = np.mean([float(outputs[f"identity_selection/{s}"].mean()) for s in SCALES])

    nhwc = lambda x: np.moveaxis(x, -3, -1)  # noqa: E731
    arrays = {
        "frames": np.moveaxis(nhwc(frames), 0, 1),  # [B, 3, H, W, 3]
        "intrinsics": np.broadcast_to(K[:3, :3], (B, 3, 3)).copy(),
        "axisangle": axisangle,
        "translation": translation,
        "loss": np.float32(losses["loss"]),
        "photometric": np.float32(photometric.mean()),
        "smoothness": np.float32(np.mean(smooth)),
        "automask_fraction": np.float32(automask),
    }
    for s in SCALES:
        arrays[f"disp_{s}"] = nhwc(disps[s])
        arrays[f"pyramid_{s}"] = nhwc(pyramid[s])
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "monodepth2_loss.npz", **arrays)
    print(
        "loss",
        arrays["loss"],
        "photometric",
        arrays["photometric"],
        "smoothness",
        arrays["smoothness"],
        "automask",
        arrays["automask_fraction"],
    )


if __name__ == "__main__":
    main()
