"""Checks that the PyTorch twins in bench/torch_nets.py compute what our JAX code computes.

The side-by-side train-step timing is only fair if both sides run the same network and loss.
This script, run with the JAX venv from the repository root, evaluates ours on fixed random
inputs and weights, saves them to an .npz, runs its own `--side=torch` half with a Python that
has torch (`--torch-python`), and prints the differences:

* `--stage=avsnet`: the tiny AVS-Net (`rgb_echoes`) with perturbed random weights copied into
  the PyTorch model (every parameter mapped, shapes checked): rel_depth, metric_depth, SILog.
* `--stage=monodepth2`: the Monodepth2 loss (`avs_jax.train.relative_task.relative_losses`) on
  fixed disparities, poses, frames and intrinsics, identity noise off.

    /work/venv/bin/python bench/torch_parity.py --stage=avsnet \
        --torch-python=/work/venv-torch-bench/bin/python

Exit status 0 when the relative differences are below `--rtol` (1e-3); prints
"torch not installed" and exits 0 when the torch side cannot import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------- JAX side


def jax_avsnet(path: str) -> None:
    import jax
    import jax.numpy as jnp
    import ml_collections
    from flax import traverse_util

    from avs_jax.losses.silog import silog_loss
    from avs_jax.models.avsnet import AVSNet, default_model_config

    c = default_model_config("tiny")
    model = AVSNet(ml_collections.FrozenConfigDict(c))
    rng = np.random.default_rng(0)
    b, (h, w) = 2, c.midas.image_size
    img = rng.random((b, h, w, 3)).astype(np.float32)
    echo = rng.random((b, h, w, 2)).astype(np.float32)
    depth = ((1 + 20 * img.mean(-1)) * (rng.random((b, h, w)) > 0.2)).astype(np.float32)
    v = model.init(jax.random.PRNGKey(0), img, echo, train=False)
    flat = traverse_util.flatten_dict(v["params"])
    keys = jax.random.split(jax.random.PRNGKey(1), len(flat))
    # Perturb every parameter, so zero-initialised ones (biases, position tables) are tested.
    flat = {k: x + 0.05 * jax.random.normal(kk, x.shape) for (k, x), kk in zip(flat.items(), keys)}
    out = model.apply(
        {"params": traverse_util.unflatten_dict(flat), "batch_stats": v["batch_stats"]},
        img,
        echo,
        train=False,
    )
    loss = silog_loss(out["metric_depth"], jnp.asarray(depth))
    save = {"P/" + "/".join(k): np.asarray(x) for k, x in flat.items()}
    save.update(
        {
            "S/" + "/".join(k): np.asarray(x)
            for k, x in traverse_util.flatten_dict(v["batch_stats"]).items()
        }
    )
    np.savez(
        path,
        img=img,
        echo=echo,
        depth=depth,
        out=np.asarray(out["metric_depth"]),
        rel=np.asarray(out["rel_depth"]),
        loss=np.float32(loss),
        **save,
    )


def jax_monodepth2(path: str) -> None:
    import jax.numpy as jnp

    from avs_jax.train.relative_task import relative_losses
    from configs import monodepth2 as md2_config

    rng = np.random.default_rng(0)
    b, h, w = 2, 64, 96
    frames = rng.random((b, 3, h, w, 3)).astype(np.float32)
    disps = [
        rng.uniform(0.05, 0.9, (b, h // 2**s, w // 2**s, 1)).astype(np.float32) for s in range(4)
    ]
    aa = (0.02 * rng.standard_normal((2, b, 3))).astype(np.float32)
    tr = (0.05 * rng.standard_normal((2, b, 3))).astype(np.float32)
    k = np.array([[0.58 * w, 0, 0.5 * w], [0, 1.92 * h, 0.5 * h], [0, 0, 1]], np.float32)
    k = np.repeat(k[None], b, 0)
    cfg = md2_config.get_config("tiny")
    cfg.loss.identity_noise = 0.0
    loss, _ = relative_losses(
        [jnp.asarray(d) for d in disps],
        jnp.asarray(aa),
        jnp.asarray(tr),
        jnp.asarray(frames),
        jnp.asarray(k),
        None,
        cfg.loss,
    )
    np.savez(
        path,
        frames=frames,
        aa=aa,
        tr=tr,
        K=k,
        loss=np.float32(loss),
        **{f"d{s}": d for s, d in enumerate(disps)},
    )


# ----------------------------------------------------------------------------- torch side


def _load_avsnet_weights(tn, model, z) -> None:
    """Copies every JAX parameter (HWIO / [in, out] layouts) into the PyTorch model."""
    import torch

    sd = model.state_dict()
    new = {}
    used = set()

    def put(name, val):
        if name not in sd or tuple(sd[name].shape) != tuple(val.shape):
            raise ValueError(f"parity: {name} {tuple(val.shape)} does not fit the PyTorch model")
        new[name] = val.contiguous()

    def arr(key):
        used.add(key)
        return torch.from_numpy(z[key])

    def layer(j, t, kind):
        kernel = arr(f"P/{j}/kernel")
        put(f"{t}.weight", kernel.permute(3, 2, 0, 1) if kind == "conv" else kernel.T)
        if f"P/{j}/bias" in z:
            put(f"{t}.bias", arr(f"P/{j}/bias"))

    def bn(j, t):
        put(f"{t}.weight", arr(f"P/{j}/scale"))
        put(f"{t}.bias", arr(f"P/{j}/bias"))
        put(f"{t}.running_mean", arr(f"S/{j}/mean"))
        put(f"{t}.running_var", arr(f"S/{j}/var"))

    e = "midas/encoder"
    put("midas.cls_token", arr(f"P/{e}/cls_token"))
    layer(f"{e}/patch_embed", "midas.patch_embed", "conv")
    for i in range(len(model.midas.blocks)):
        j, t = f"{e}/blocks_{i}", f"midas.blocks.{i}"
        for n in ("norm1", "norm2"):
            put(f"{t}.{n}.weight", arr(f"P/{j}/{n}/scale"))
            put(f"{t}.{n}.bias", arr(f"P/{j}/{n}/bias"))
        layer(f"{j}/attn/qkv", f"{t}.attn.qkv", "dense")
        for n in ("q_bias", "v_bias"):
            put(f"{t}.attn.{n}", arr(f"P/{j}/attn/{n}"))
        put(f"{t}.attn.table", arr(f"P/{j}/attn/relative_position_bias_table"))
        layer(f"{j}/attn/proj", f"{t}.attn.proj", "dense")
        layer(f"{j}/mlp_fc1", f"{t}.fc1", "dense")
        layer(f"{j}/mlp_fc2", f"{t}.fc2", "dense")
        for n in ("gamma_1", "gamma_2"):
            put(f"{t}.{n}", arr(f"P/{j}/{n}"))
    for k in range(4):
        j, t = f"{e}/act_postprocess{k + 1}", f"midas.reassemble.{k}"
        layer(f"{j}/readout_project", f"{t}.readout", "dense")
        layer(f"{j}/conv1x1", f"{t}.conv1x1", "conv")
        if k in (0, 1):  # transposed conv, kernel = stride: [s, s, in, out] -> [in, out, s, s]
            put(f"{t}.resample.weight", arr(f"P/{j}/resample/kernel").permute(2, 3, 0, 1))
            put(f"{t}.resample.bias", arr(f"P/{j}/resample/bias"))
        elif k == 3:
            layer(f"{j}/resample", f"{t}.resample", "conv")
        layer(f"midas/layer{k + 1}_rn", f"midas.layer_rn.{k}", "conv")
        r, tr = f"midas/refinenet{k + 1}", f"midas.refinenet.{k}"
        for u, tu in (("resConfUnit1", "rcu1"), ("resConfUnit2", "rcu2")):
            if f"P/{r}/{u}/conv1/kernel" in z:
                for cc in ("conv1", "conv2"):
                    layer(f"{r}/{u}/{cc}", f"{tr}.{tu}.{cc}", "conv")
        layer(f"{r}/out_conv", f"{tr}.out_conv", "conv")
    for h in (1, 2, 3):
        layer(f"midas/head_conv{h}", f"midas.head_conv{h}", "conv")
    layer("conv2", "conv2", "conv")
    layer("echo_encoder/conv1", "echo_encoder.conv1", "conv")
    bn("echo_encoder/bn1", "echo_encoder.bn1")
    for s, stage in enumerate(model.echo_encoder.stages):
        for i, blk in enumerate(stage):
            j, t = f"echo_encoder/layer{s + 1}_{i}", f"echo_encoder.stages.{s}.{i}"
            layer(f"{j}/conv1", f"{t}.conv1", "conv")
            bn(f"{j}/bn1", f"{t}.bn1")
            layer(f"{j}/conv2", f"{t}.conv2", "conv")
            bn(f"{j}/bn2", f"{t}.bn2")
            if blk.downsample is not None:
                layer(f"{j}/downsample_conv", f"{t}.downsample.0", "conv")
                bn(f"{j}/downsample_bn", f"{t}.downsample.1")
    for n in ("audio_proj", "query", "key", "value", "out"):
        layer(f"cross_attention/{n}", f"cross_attention.{n}", "dense")
    m = "metric_bins"
    pairs = [("seed_bin_regressor", "seed_regressor.0"), ("seed_projector", "seed_projector")]
    pairs += [(f"projectors_{i}", f"projectors.{i}") for i in range(4)]
    pairs += [(f"attractors_{i}", f"attractors.{i}.0") for i in range(4)]
    pairs += [("conditional_log_binomial", "clb")]
    for j, t in pairs:
        layer(f"{m}/{j}/conv1", f"metric_bins.{t}.0", "conv")
        layer(f"{m}/{j}/conv2", f"metric_bins.{t}.2", "conv")
    missing = [k for k in sd if k not in new and not k.endswith("num_batches_tracked")]
    unused = [k for k in z.files if k.startswith("P/") and k not in used]
    if missing or unused:
        raise ValueError(
            f"parity: PyTorch parameters not filled {missing}, JAX parameters not used {unused}"
        )
    model.load_state_dict(new, strict=False)


def torch_side(stage: str, path: str) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    import torch_nets as tn

    z = np.load(path)

    def t(key, perm):
        return torch.from_numpy(np.ascontiguousarray(z[key])).permute(*perm).contiguous()

    if stage == "avsnet":
        model, _ = tn.build_avsnet("tiny")
        _load_avsnet_weights(tn, model, z)
        model.eval()
        with torch.no_grad():
            out = model(t("img", (0, 3, 1, 2)), t("echo", (0, 3, 1, 2)))
            loss = float(tn.silog_loss(out["metric_depth"], torch.from_numpy(z["depth"])))
        rel = out["rel_depth"].permute(0, 2, 3, 1).numpy()
        dep = out["metric_depth"].permute(0, 2, 3, 1).numpy()
        return {
            "rel_depth_rel_err": float(np.abs(rel - z["rel"]).max() / np.abs(z["rel"]).max()),
            "metric_depth_rel_err": float(np.abs(dep - z["out"]).max() / np.abs(z["out"]).max()),
            "silog_torch": loss,
            "silog_jax": float(z["loss"]),
            "silog_rel_err": abs(loss - float(z["loss"])) / abs(float(z["loss"])),
        }
    cfg = {**tn.MONODEPTH2_SIZES["tiny"], **tn.MONODEPTH2_COMMON, "identity_noise": 0.0}
    disps = [t(f"d{s}", (0, 3, 1, 2)) for s in range(4)]
    loss = float(
        tn.monodepth2_loss(
            disps,
            t("aa", (0, 1, 2)),
            t("tr", (0, 1, 2)),
            t("frames", (0, 1, 4, 2, 3)),
            t("K", (0, 1, 2)),
            cfg,
        )
    )
    return {
        "loss_torch": loss,
        "loss_jax": float(z["loss"]),
        "loss_rel_err": abs(loss - float(z["loss"])) / abs(float(z["loss"])),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("avsnet", "monodepth2"), default="avsnet")
    p.add_argument("--side", choices=("jax", "torch"), default="jax")
    p.add_argument("--npz", default="")
    p.add_argument(
        "--torch-python",
        default=os.environ.get("TORCH_PYTHON", ""),
        help="a Python with torch (default $TORCH_PYTHON)",
    )
    p.add_argument("--rtol", type=float, default=1e-3)
    args = p.parse_args(argv)
    if args.side == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            print(json.dumps({"skipped": "torch not installed"}))
            return 0
        print(json.dumps(torch_side(args.stage, args.npz)))
        return 0
    if not args.torch_python:
        print(
            "parity: pass --torch-python (a Python with torch) or set $TORCH_PYTHON",
            file=sys.stderr,
        )
        return 2
    sys.path.append(str(ROOT))  # after $PYTHONPATH, so a checkout named there wins
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "parity.npz")
        (jax_avsnet if args.stage == "avsnet" else jax_monodepth2)(path)
        res = subprocess.run(
            [args.torch_python, __file__, "--stage", args.stage, "--side", "torch", "--npz", path],
            capture_output=True,
            text=True,
        )
    if res.returncode:
        print(res.stderr, file=sys.stderr)
        return res.returncode
    result = json.loads(res.stdout.strip().splitlines()[-1])
    if "skipped" in result:
        print("torch not installed")
        return 0
    errs = [v for k, v in result.items() if k.endswith("_rel_err")]
    result["ok"] = all(e < args.rtol for e in errs)
    print(json.dumps({"parity": args.stage, **result}))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
