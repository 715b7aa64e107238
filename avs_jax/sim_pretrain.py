"""`mode="sim_pretrain"`: the quickstart's pretrained weights, made from simulated rooms that the
quickstart never sees (configs/sim_pretrain.py).

The paper's AVS-Net starts from a pretrained MiDaS/ZoeDepth and its relative Monodepth2 from
ImageNet encoders; the quickstart's tiny models have no such weights to import, so this mode
makes their analogs on corpora of its own seeds (the quickstart trains and tests on rooms of
seeds 0-3; its held-out sets use seeds 1000-1051):

  1. simulate a BV2-like corpus (seed), BV1-like offices in sequences
     (seed + 1) and many BV1-like offices of a few frames (seed + 2)   workdir/data/*_root
  2. build batvision/bv2, bv1 and bv1_triples from the first two;
     batvision/bv1 from the third                  workdir/data/tfds, workdir/data/offices_tfds
  3. train a tiny ZoeDepth (the Only-RGB AVS-Net) on BV2               workdir/zoedepth
  4. fine-tune it on the many offices' metric depth (ZoeDepth's
     NYU fine-tuning: a model of many rooms, then indoor ones)        workdir/zoedepth_offices
  5. train the relative stage's tiny DepthNet on BV2 depth up to
     each image's scale (task "depth_pretext")                         workdir/depthnet
  6. train the relative stage self-supervised on the offices in
     sequences, for its PoseNet                                        workdir/posenet
  7. write the weights: 4 as tiny_zoedepth_sim.npz; 5's DepthNet with 6's PoseNet as
     tiny_monodepth2_sim.npz                                           workdir/*.npz

The two files in `avs_jax/assets/`, which configs/quickstart.py starts from, are this mode's
output at configs/sim_pretrain.py's settings (`--config.install=True` copies them there). Each
stage is reused when done and resumed when interrupted, with the quickstart's settings checks.
"""

from __future__ import annotations

import os
import shutil

import ml_collections
from absl import logging

from avs_jax.sim_roots import build_from_root, sim_settings, simulate_root

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
WEIGHTS = "tiny_zoedepth_sim.npz"  # stage 1 (both variants) starts from it
# The relative stage (DepthNet + PoseNet) starts from it.
RELATIVE_WEIGHTS = "tiny_monodepth2_sim.npz"
# The shipped files' corpora: seeds SHIPPED_SEED, + 1 and + 2 (configs/sim_pretrain.py).
SHIPPED_SEED = 9000


def _final_variables(run_dir: str) -> dict:
    """{"params", "batch_stats"} of the newest checkpoint of the run in `run_dir`."""
    from avs_jax import import_weights as iw
    from avs_jax.quickstart import _saved_steps

    steps = _saved_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to export")
    return iw.read_imported(os.path.join(run_dir, "checkpoints", str(max(steps))))


def export_final(run_dir: str, out_path: str) -> str:
    """The newest checkpoint of the run in `run_dir` as a `save_weights_npz` file (params and
    BatchNorm statistics; no optimizer state). Returns `out_path`."""
    from avs_jax import import_weights as iw

    return str(iw.save_weights_npz(out_path, _final_variables(run_dir)))


def export_relative(depthnet_run: str, posenet_run: str, out_path: str) -> str:
    """The relative model's variables with the DepthNet of `depthnet_run` (a "depth_pretext" run)
    and the PoseNet of `posenet_run` (a relative run), as one .npz. Returns `out_path`."""
    from avs_jax import import_weights as iw

    depth, pose = _final_variables(depthnet_run), _final_variables(posenet_run)
    variables = {
        c: {"depth_net": depth[c]["depth_net"], "pose_net": pose[c]["pose_net"]}
        for c in ("params", "batch_stats")
    }
    return str(iw.save_weights_npz(out_path, variables))


def _corpus_sim(config: ml_collections.ConfigDict, name: str, layout: str):
    """{"sim": {"workers", layout}} with corpus `name`'s settings under its layout's key, as
    `sim_roots.simulate_root` reads them."""
    sim = {"workers": config.sim.workers, layout: config.sim[name].to_dict()}
    return ml_collections.ConfigDict({"sim": sim})


def run(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """Runs every stage into `workdir`; returns the paths of the two written .npz files."""
    from avs_jax.quickstart import _train

    logging.set_verbosity(logging.WARNING)
    workdir = os.path.abspath(workdir)
    # corpus -> (simulator seed, layout, the datasets built from it, their TFDS folder)
    corpora = {
        "bv2": (config.seed, "bv2", ("bv2",), "tfds"),
        "bv1": (config.seed + 1, "bv1", ("bv1", "bv1_triples"), "tfds"),
        "offices": (config.seed + 2, "bv1", ("bv1",), "offices_tfds"),
    }
    tfds_dirs = {name: os.path.join(workdir, "data", c[3]) for name, c in corpora.items()}
    print("[1/7] simulating the pretraining rooms", flush=True)
    fresh = {
        name: simulate_root(
            _corpus_sim(config, name, layout),
            os.path.join(workdir, "data", f"{name}_root"),
            layout,
            seed,
        )
        for name, (seed, layout, _, _) in corpora.items()
    }
    print("[2/7] building the TFDS datasets", flush=True)
    for name, (_, _, datasets, _) in corpora.items():
        root = os.path.join(workdir, "data", f"{name}_root")
        for dataset in datasets:
            build_from_root(dataset, root, tfds_dirs[name], fresh[name])
    runs = {}
    for n, (name, corpus, what) in enumerate(
        [
            ("zoedepth", "bv2", "training a tiny ZoeDepth (Only-RGB AVS-Net)"),
            ("zoedepth_offices", "offices", "fine-tuning it on the BV1-like offices' depth"),
            ("depthnet", "bv2", "training the relative stage's tiny DepthNet, depth up to scale"),
            ("posenet", "bv1", "training the relative stage self-supervised, for its PoseNet"),
        ],
        start=3,
    ):
        print(f"[{n}/7] {what}", flush=True)
        seed, layout = corpora[corpus][:2]
        section = {"zoedepth": "stage1", "zoedepth_offices": "offices"}.get(name, name)
        cfg = ml_collections.ConfigDict(config[section].to_dict())
        cfg.data.data_dir = tfds_dirs[corpus]
        if name == "zoedepth_offices":
            # From step 3's final weights, as a file: the run's settings then record its hash.
            cfg.init_from = export_final(runs["zoedepth"], os.path.join(workdir, "zoedepth.npz"))
        cfg.train.seed = config.seed
        runs[name] = os.path.join(workdir, name)
        _train(cfg, runs[name], sim_settings(_corpus_sim(config, corpus, layout), layout, seed))
    print("[7/7] writing the weights", flush=True)
    out = [
        export_final(runs["zoedepth_offices"], os.path.join(workdir, WEIGHTS)),
        export_relative(runs["depthnet"], runs["posenet"], os.path.join(workdir, RELATIVE_WEIGHTS)),
    ]
    for path in out:
        print(f"      {path}", flush=True)
        if config.install:
            os.makedirs(ASSETS, exist_ok=True)
            shutil.copyfile(path, os.path.join(ASSETS, os.path.basename(path)))
            print(f"      copied into {ASSETS}", flush=True)
    return out
