"""AVS-Net stage 1 (paper Sec. 3.3.1): model and loss sections.

`--config=configs/avsnet.py:ARG` with ARG a comma-separated list of:
  ""          the paper: BEiT-L/16-384 DPT at 256×512, RGB + echoes (AVS-Net), max depth 30 m;
  "rgb"       Only-RGB (ZoeDepth path, no echo branch);
  "echoes"    echo-only baseline (ResNet-18 + decoder);
  "rgb_echoes" AVS-Net (the default, for symmetry);
  "tiny"      a CPU-sized network for tests and the quickstart;
e.g. "tiny,rgb". The data and training sections are composed by the top-level config.
"""

from __future__ import annotations

import ml_collections

from avs_jax.models.avsnet import VARIANTS, default_model_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """The model (and SILog) sections for the variant and size named in `arg`."""
    tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
    unknown = [t for t in tokens if t not in VARIANTS + ("tiny", "paper")]
    if unknown:
        raise ValueError(f"configs/avsnet.py: unknown argument(s) {unknown}; use a comma-separated "
                         f"list of {VARIANTS + ('tiny',)}")
    variants = [t for t in tokens if t in VARIANTS]
    if len(variants) > 1:
        raise ValueError(f"configs/avsnet.py: more than one variant in {arg!r}")
    config = ml_collections.ConfigDict()
    config.model = default_model_config("tiny" if "tiny" in tokens else "paper")
    if variants:
        config.model.variant = variants[0]
    config.loss = ml_collections.ConfigDict()
    config.loss.silog_alpha = 10.0  # paper eq. 4, alpha
    config.loss.silog_beta = 0.15  # 1 - lambda, lambda = 0.85 (paper eq. 4)
    return config
