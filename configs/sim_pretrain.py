"""The quickstart's pretrained visual weights, from simulated rooms it never sees
(avs_jax/sim_pretrain.py).

  python -m avs_jax.main --config=configs/sim_pretrain.py --workdir=runs/sim_pretrain

Writes runs/sim_pretrain/tiny_zoedepth_sim.npz; `--config.install=True` also copies it into
avs_jax/assets/, where configs/quickstart.py reads it. About 9 min on 2 CPU cores.
"""

import ml_collections

from avs_jax.config_files import load_config as _load


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    # Each setting's measurements: docs/quickstart.md, "Pretrained weights".
    del arg
    q = _load("quickstart")
    c = ml_collections.ConfigDict()
    c.mode = "sim_pretrain"
    # Far from the quickstart's seeds (0-2 and +1) and its held-out sets' (1000-1050).
    c.seed = 9000
    c.install = False  # True: copy the .npz into avs_jax/assets/
    c.sim = ml_collections.ConfigDict({"workers": q.sim.workers, "bv2": q.sim.bv2.to_dict()})
    # The quickstart's BV2-like rooms, 1200 of them with one view each (1080 train): more rooms
    # rather than more views of the same ones.
    c.sim.bv2.scenes = 1200
    c.sim.bv2.frames_per_scene = 1
    c.sim.bv2.split_fractions = (0.9, 0.05, 0.05)
    # The quickstart's stage-1 settings, Only-RGB (a tiny ZoeDepth), from scratch.
    c.stage1 = q.stage1
    c.stage1.init_from = ""
    c.stage1.model.variant = "rgb"
    c.stage1.train.num_epochs = 18  # 4860 steps, five times the quickstart's stage 1
    return c
