"""Relative-depth stage, light 3-scale DepthNet (Lite-Mono-like) + PoseNet, on BV1 triples.

Paper Sec. 3.3.2 (losses, 192×640; scales 1, 1/2, 1/4 for Lite-Mono, footnote 4), Lite-Mono's
AdamW with weight decay 1e-2 (REFERENCE.md); the rest as Monodepth2 (batch 12, lr 1e-4, 20 epochs,
×0.1 after 15, depth 0.1-100), since the paper gives no other schedule.
`--config=configs/litemono.py` for the paper run, `--config=configs/litemono.py:tiny` for a CPU
smoke run.
"""

import ml_collections

from avs_jax.models.depthnet import default_model_config

MODEL = "lite"


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """arg: "" (paper) or "tiny" (CPU: small networks, 64×96 frames, batch 2)."""
    if arg not in ("", "tiny"):
        raise ValueError(f"configs/litemono.py: unknown argument {arg!r}; use '' or 'tiny'")
    tiny = arg == "tiny"
    config = ml_collections.ConfigDict()
    config.stage = "relative"
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "bv1_triples"
    config.data.data_dir = ""  # TFDS data_dir; set on the command line
    config.data.image_size = (64, 96) if tiny else (192, 640)  # paper Sec. 3.3.2
    config.data.frame_interval = 20  # paper Sec. 4.1: triples t−20, t, t+20
    # Monodepth2 augmentation: colour jitter with p 0.5, horizontal flip with p 0.5.
    config.data.color_jitter_prob = 0.5
    config.data.brightness = 0.2  # factor in [0.8, 1.2]
    config.data.contrast = 0.2
    config.data.saturation = 0.2
    config.data.hue = 0.1  # ±0.1
    config.data.flip_prob = 0.5

    config.model = default_model_config(MODEL, "tiny" if tiny else "full")

    config.loss = ml_collections.ConfigDict()
    config.loss.ssim_weight = 0.85  # gamma of paper Eq. 5 (L1 weight beta = 0.15)
    config.loss.smoothness_weight = 1e-3  # lambda of paper Eq. 6, / 2^scale per scale
    config.loss.scales = tuple(config.model.scales)  # must equal config.model.scales
    config.loss.min_depth = 0.1  # Monodepth2 disp_to_depth
    config.loss.max_depth = 100.0
    config.loss.automask = True
    config.loss.identity_noise = 1e-5  # tie-break noise on the identity losses
    # grid_sample convention; True = Monodepth2 as written (see avs_jax/geometry.py).
    config.loss.align_corners = True

    config.train = ml_collections.ConfigDict()
    config.train.optimizer = "adamw_step"  # Lite-Mono: AdamW; step decay as Monodepth2
    config.train.learning_rate = 1e-4
    config.train.weight_decay = 1e-2
    config.train.batch_size = 2 if tiny else 12
    config.train.epochs = 1 if tiny else 20
    config.train.decay_epochs = 15  # StepLR(15)
    config.train.decay_factor = 0.1
    config.train.num_train_steps = 4 if tiny else -1  # -1: from epochs and the dataset size
    config.train.log_every_steps = 1 if tiny else 50
    config.train.checkpoint_every_steps = 2 if tiny else 1000
    return config
