"""Relative depth, Monodepth2 DepthNet + PoseNet, self-supervised on BV1 triples (paper 3.2.1).

Paper Sec. 3.3.2 and Monodepth2's options.py (docs/reference.md): 192×640, scales 0-3, depth
0.1-100, batch 12, Adam 1e-4, 20 epochs, ×0.1 after 15, smoothness 1e-3, automasking.
`--config=configs/monodepth2.py` for the paper run, `:tiny` for a CPU run at 64×96.
"""

import ml_collections

from avs_jax.data.config import default_data_config
from avs_jax.models.relative_model import relative_model_config
from avs_jax.train.defaults import default_train_config


def relative_config(model: str, arg: str) -> ml_collections.ConfigDict:
    """The relative-depth experiment for `model` ("monodepth2" or "lite"); arg "" or "tiny"."""
    if arg not in ("", "tiny"):
        name = "monodepth2" if model == "monodepth2" else "litemono"
        raise ValueError(f"configs/{name}.py: unknown argument {arg!r}; use '' (paper) or 'tiny'")
    tiny = arg == "tiny"
    c = default_train_config("monodepth2" if model == "monodepth2" else "litemono")
    c.mode = "train"
    c.task = "relative"
    c.data = default_data_config("bv1_triples")  # 192×640, batch 12, Monodepth2 augment
    c.model = relative_model_config(model, "tiny" if tiny else "full")
    c.loss = ml_collections.ConfigDict()
    c.loss.ssim_weight = 0.85  # paper eq. 5: gamma (the L1 weight beta = 0.15)
    c.loss.smoothness_weight = 1e-3  # paper eq. 6: lambda, / 2^scale per scale
    c.loss.scales = c.model.get_ref("scales")
    c.loss.min_depth = 0.1  # Monodepth2 disp_to_depth
    c.loss.max_depth = 100.0
    c.loss.automask = True
    c.loss.identity_noise = 1e-5  # Monodepth2's tie-break noise on the identity losses
    c.loss.align_corners = True  # grid_sample convention as Monodepth2 wrote it (geometry.py)
    # Triples have no depth: checkpoints are ranked by the validation photometric loss.
    c.checkpoint.best_metric = "loss"
    if tiny:
        c.data.image_size = (64, 96)
        c.data.batch_size = 4
        c.data.num_workers = 0
        # Read in the loop's prefetch thread: at this size grain's read threads cost more CPU
        # than the reading (0.4 of 1.0 ms per example; bench/RESULTS.md, "End to end").
        c.data.num_threads = 0
        c.data.cache_decoded = True  # as configs/avsnet.py:tiny: records parsed once, not per epoch
        c.train.num_epochs = 2
        c.train.log_every = 5
    return c


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return relative_config("monodepth2", arg)
