"""AVS-Net stage 1 (paper Sec. 3.1, 3.3.1): supervised pseudo-dense metric depth on BV2.

`python -m avs_jax.main --config=configs/avsnet.py[:ARG] --workdir=DIR`, ARG a comma-separated
list of:
  (empty)      the paper: AVS-Net (RGB-Echoes), BEiT-L/16-384 DPT at 256×512, BV2, max depth 30 m,
               ZoeDepth's optimiser (AdamW 1.61e-4, OneCycle, encoder at lr/10, clip 0.1,
               batch 16, 5 epochs);
  rgb          Only-RGB (ZoeDepth's path without the echo branch);
  echoes       the echo-only baseline (ResNet-18 echo encoder + depth decoder, as BatVision);
  tiny         a CPU-sized network at 64×128 for tests and the quickstart.
Pretrained weights: `--config.init_from=DIR` (an orbax checkpoint made by
`python -m avs_jax.import_weights`), `--config.init_from_target=midas` for a MiDaS import.
"""

import ml_collections

from avs_jax.data.config import default_data_config
from avs_jax.models.avsnet import VARIANTS, default_model_config
from avs_jax.train.defaults import default_train_config

ARGS = VARIANTS + ("tiny",)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
    unknown = [t for t in tokens if t not in ARGS]
    if unknown:
        raise ValueError(
            f"configs/avsnet.py: unknown argument(s) {unknown}; use a comma-separated "
            f"list of {ARGS}"
        )
    variants = [t for t in tokens if t in VARIANTS]
    if len(variants) > 1:
        raise ValueError(f"configs/avsnet.py: more than one variant in {arg!r}")
    tiny = "tiny" in tokens

    c = default_train_config("avsnet")
    c.mode = "train"
    c.task = "avsnet"
    c.data = default_data_config("bv2")  # 256×512, batch 16, max depth 30 m, ZoeDepth augment
    c.model = default_model_config("tiny" if tiny else "paper")
    c.model.variant = variants[0] if variants else "rgb_echoes"
    # One source of truth for the input size and the depth range.
    c.model.midas.image_size = c.data.get_ref("image_size")
    c.model.max_depth = c.data.get_ref("max_depth")
    c.loss = ml_collections.ConfigDict()
    c.loss.silog_alpha = 10.0  # paper eq. 4: alpha
    c.loss.silog_beta = 0.15  # paper eq. 4: 1 - lambda, lambda = 0.85
    c.checkpoint.best_metric = "abs_rel"
    if tiny:
        c.data.image_size = (64, 128)
        c.data.batch_size = 4
        c.data.num_workers = 0
        # Read in the loop's prefetch thread: at this size grain's read threads cost more CPU
        # than the reading (0.4 of 1.0 ms per example; bench/RESULTS.md, "End to end").
        c.data.num_threads = 0
        # Decoded examples kept in memory (~45 MB for the quickstart's 384): a step of this size
        # is short enough that re-reading and parsing each record (1.4 of 2.0 ms per batch) showed
        # in the training command's throughput (bench/RESULTS.md, "End to end").
        c.data.cache_decoded = True
        c.train.num_epochs = 2
        c.train.log_every = 5
        c.train.learning_rate = 1e-3  # a small network from scratch, not a pretrained encoder
        c.train.lr_multipliers = {}
        c.train.grad_clip_norm = 1.0
    return c
