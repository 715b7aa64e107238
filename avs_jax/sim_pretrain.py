"""`mode="sim_pretrain"`: the quickstart's pretrained visual weights, made from simulated rooms
that the quickstart never sees (configs/sim_pretrain.py).

The paper's AVS-Net starts from a pretrained MiDaS/ZoeDepth; the quickstart's tiny model has no
such weights to import, so this mode makes their analog, a tiny ZoeDepth (the Only-RGB AVS-Net:
MiDaS, metric bins, attractors), trained on a BV2-like corpus of its own seed (the quickstart
trains and tests on rooms of seeds `seed`, `seed + 1`; its held-out sets use seeds 1000-1050):

  1. simulate the BV2-like corpus                  workdir/data/bv2_root
  2. build batvision/bv2 from it                   workdir/data/tfds
  3. train the tiny Only-RGB AVS-Net               workdir/zoedepth
  4. write its final weights as one .npz           workdir/tiny_zoedepth_sim.npz

`avs_jax/assets/tiny_zoedepth_sim.npz`, which configs/quickstart.py starts from, is this mode's
output at configs/sim_pretrain.py's settings (`--config.install=True` copies it there). Each
stage is reused when done and resumed when interrupted, with the quickstart's settings checks.
"""

from __future__ import annotations

import os
import shutil

import ml_collections
from absl import logging

from avs_jax.sim_roots import sim_settings, simulate_root

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
WEIGHTS = "tiny_zoedepth_sim.npz"


def export_final(run_dir: str, out_path: str) -> str:
    """The newest checkpoint of the run in `run_dir` as a `save_weights_npz` file (params and
    BatchNorm statistics; no optimizer state). Returns `out_path`."""
    from avs_jax import import_weights as iw
    from avs_jax.quickstart import _saved_steps

    steps = _saved_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to export")
    variables = iw.read_imported(os.path.join(run_dir, "checkpoints", str(max(steps))))
    return str(iw.save_weights_npz(out_path, variables))


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Runs every stage into `workdir`; returns the path of the written .npz."""
    from avs_jax.quickstart import _train
    from tfds_batvision.build import build_dataset

    logging.set_verbosity(logging.WARNING)
    workdir = os.path.abspath(workdir)
    tfds_dir = os.path.join(workdir, "data", "tfds")
    root = os.path.join(workdir, "data", "bv2_root")
    print("[1/4] simulating the pretraining rooms", flush=True)
    fresh = simulate_root(config, root, "bv2", config.seed)
    print("[2/4] building the TFDS dataset", flush=True)
    build_dataset("bv2", root, tfds_dir, overwrite=fresh)
    print("[3/4] training a tiny ZoeDepth (Only-RGB AVS-Net)", flush=True)
    cfg = ml_collections.ConfigDict(config.stage1.to_dict())
    cfg.data.data_dir = tfds_dir
    cfg.train.seed = config.seed
    run_dir = os.path.join(workdir, "zoedepth")
    _train(cfg, run_dir, sim_settings(config, "bv2", config.seed))
    print("[4/4] writing the weights", flush=True)
    out = export_final(run_dir, os.path.join(workdir, WEIGHTS))
    print(f"      {out}", flush=True)
    if config.install:
        os.makedirs(ASSETS, exist_ok=True)
        shutil.copyfile(out, os.path.join(ASSETS, WEIGHTS))
        print(f"      copied into {ASSETS}", flush=True)
    return out
