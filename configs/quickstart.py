"""The whole paper on simulated BatVision, in minutes on a CPU (README's first command).

  python -m avs_jax.main --config=configs/quickstart.py --workdir=runs/quickstart

Simulates a BV2-like and a BV1-like dataset, builds the three TFDS datasets, trains AVS-Net
(RGB-Echoes), its Only-RGB baseline and a relative DepthNet/PoseNet (tiny sizes), evaluates
(Tables 1 and 2, figures) and checks the paper's claims on held-out simulated rooms. A second
run reuses what is done; an interrupted run continues where it stopped.
"""

import os

import ml_collections
import numpy as np

from avs_jax.config_files import load_config as _load
from avs_jax.sim_pretrain import ASSETS, RELATIVE_WEIGHTS, WEIGHTS
from tfds_batvision.sim import scene as scene_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    # Each setting's measurements: docs/quickstart_findings.md, "Settings".
    del arg
    c = ml_collections.ConfigDict()
    c.mode = "quickstart"
    c.seed = 0
    c.sim = ml_collections.ConfigDict()
    c.sim.workers = 2  # the 2 cores of the target machine
    # BV2-like: 160 rooms of 3-30 m; global_scale makes a small and a large room look alike,
    # so only the echo can tell the scale (the paper's point).
    c.sim.bv2 = ml_collections.ConfigDict(
        dict(
            scenes=160,
            frames_per_scene=4,
            height=64,
            width=128,
            min_room=3.0,
            max_room=30.0,
            global_scale=True,
            supersample=1,
            onset_jitter=32,  # recorders' lead-in varies: the onset alignment must undo it
        )
    )
    # BV1-like: 54 offices up to 12 m, 100-frame sequences; 10 / 2 / 42 rooms, every 5th frame of
    # each test walk: BV1 test's spread over seeds is its rooms', not its frames'
    # (docs/quickstart_findings.md, "Settings").
    c.sim.bv1 = ml_collections.ConfigDict(
        dict(
            scenes=54,
            frames_per_scene=100,
            height=64,
            width=128,
            min_room=3.0,
            max_room=12.0,
            global_scale=True,
            supersample=1,
            split_fractions=(10, 2, 42),
            test_frame_stride=5,  # 20 frames 10 cm apart per test room: within 0.006 of all 100
            onset_jitter=32,  # around BV1's real 980-sample lead-in (BV2: 287)
            step_m=scene_lib.STEP_M,  # the simulator's rig motion per frame
            max_turn_deg=float(np.degrees(scene_lib.MAX_TURN_RAD)),
        )
    )

    c.stage1 = _load("avsnet", "tiny")
    # A tiny ZoeDepth made from simulated rooms of other seeds (avs_jax/sim_pretrain.py), as the
    # paper's AVS-Net starts from a pretrained MiDaS/ZoeDepth (docs/quickstart.md, "Pretrained weights").
    c.stage1.init_from = os.path.join(ASSETS, WEIGHTS)  # tiny_zoedepth_sim.npz
    c.stage1.train.num_epochs = 10  # 960 steps: still learning at 6 (docs/quickstart_findings.md)
    # MidasNet's convolutional encoder (MiDaS v2.1's layout) at the tiny DepthNet's widths: on
    # unseen BV1 rooms it reads more of the room than the 4x8-token ViT (docs/quickstart_findings.md).
    c.stage1.model.midas.conv_widths = (8, 8, 16, 16, 32)
    c.stage1.model.midas.conv_blocks = (1, 1, 1, 1)
    # Best epoch by SILog (paper eq. 4), not Abs Rel: on 128 validation samples Abs Rel follows
    # each epoch's scale and kept one seed's epoch 3 of 10 (docs/quickstart_findings.md, "Settings").
    c.stage1.checkpoint.best_metric = "silog"
    # report.html shows the results; TensorBoard images would add ~6 s of compile per run.
    c.stage1.train.num_summary_images = 0
    c.stage1.data.cache_decoded = True  # decode JPEG/STFT once, not in each of the 10 epochs
    # On a CPU the "device" is the host: the STFT made once and cached beats one made in each
    # step (device prep measured +12 ms per tiny step, ~7 s per stage-1 run).
    c.stage1.data.device_prep = False
    # log(STFT magnitude): the tiny encoder reads more than the direct path (not in the paper).
    c.stage1.model.echo.log_magnitude = True
    c.relative = _load("monodepth2", "tiny")
    c.relative.data.image_size = (64, 128)  # the simulated frames' size
    # A tiny Monodepth2 made from simulated rooms of other seeds (DepthNet: depth up to scale;
    # PoseNet: self-supervised), as the paper's starts from ImageNet encoders (docs/quickstart.md,
    # "Pretrained weights").
    c.relative.init_from = os.path.join(ASSETS, RELATIVE_WEIGHTS)  # tiny_monodepth2_sim.npz
    c.relative.train.num_epochs = 4  # 600 steps; 6 epochs start to fit the 10 training rooms
    # Monodepth2's rate for a pretrained encoder: 1e-3 (the setting from scratch) undid more of
    # the pretrained structure (docs/quickstart_findings.md, "The relative stage").
    c.relative.train.learning_rate = 1e-4
    c.relative.train.num_summary_images = 0  # as stage 1: report.html shows the results
    # disp_to_depth range 0.01-10 (Monodepth2: 0.1-100): the small initial pose parallax then
    # stays above the depth floor.
    c.relative.loss.min_depth = 0.01
    c.relative.loss.max_depth = 10.0
    c.evaluate = _load("evaluate", "")
    c.evaluate.figures.num_per_dataset = 3  # Fig. 5-like panels per dataset
    c.evaluate.relative_checkpoint = "latest"  # as Monodepth2 evaluates; "best" is noisy here

    # Held-out rooms (avs_jax/heldout.py), off by default: --config.heldout.enabled=True also
    # evaluates the models on test rooms of other seeds and settings outside training's.
    c.heldout = ml_collections.ConfigDict()
    c.heldout.enabled = False
    c.heldout.scenes = {"bv2": 40, "bv1": 20}  # 160 BV2 samples, 400 BV1 images (20 rooms) per set
    c.heldout.figures_per_dataset = 2
    c.heldout.sets = {
        # Seeds far from the quickstart's (seed, seed + 1): other rooms, training's ranges.
        "other_rooms": {"seed": 1000},
        # Below and above every trained room (BV2 3-30 m, BV1 3-12 m).
        "small_rooms": {
            "seed": 1010,
            "bv2": {"min_room": 1.5, "max_room": 3.0},
            "bv1": {"min_room": 1.5, "max_room": 3.0},
        },
        "large_rooms": {
            "seed": 1020,
            "bv2": {"min_room": 30.0, "max_room": 40.0},
            "bv1": {"min_room": 12.0, "max_room": 16.0},
        },
        # Training has up to 4 box obstacles, no windows, reflections up to order 3.
        "cluttered": {"seed": 1030, "bv2": {"max_obstacles": 10}, "bv1": {"max_obstacles": 10}},
        "windows": {"seed": 1040, "bv2": {"window_prob": 0.3}, "bv1": {"window_prob": 0.3}},
        "reverberant": {"seed": 1050, "bv2": {"max_order": 6}, "bv1": {"max_order": 6}},
    }
    return c
