"""ZoeDepth v1 (isl-org/ZoeDepth zoedepth_v1.py) -> avs_jax.models.avsnet.AVSNet, variant "rgb".

The Only-RGB row of the paper. Upstream: the MiDaS DPT under "core.core." (imported by
`avs_jax.import_weights.midas`); `conv2` on the bottleneck; every head MLP is a Sequential
[conv, act, conv(, act)] ("_net" in the seed regressor, projectors and attractors, "mlp" in the
conditional log-binomial), so conv1 -> index 0, conv2 -> index 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.mapping import Rule, Variables, model_template
from avs_jax.import_weights.midas import (
    block_indices,
    image_size_arg,
    import_midas_dpt,
    midas_config_from_state_dict,
)
from avs_jax.import_weights.readers import read_state_dict


def _mlp_index(m: re.Match) -> str:
    return {"1": "0", "2": "2"}[m.group(m.lastindex)]


ZOEDEPTH_HEAD_RULES = (
    Rule(r"conv2", "conv2"),
    Rule(
        r"metric_bins/(seed_bin_regressor|seed_projector)/conv(\d)",
        lambda m: f"{m.group(1)}._net.{_mlp_index(m)}",
    ),
    Rule(
        r"metric_bins/(projectors|attractors)_(\d+)/conv(\d)",
        lambda m: f"{m.group(1)}.{m.group(2)}._net.{_mlp_index(m)}",
    ),
    Rule(
        r"metric_bins/conditional_log_binomial/conv(\d)",
        lambda m: f"conditional_log_binomial.mlp.{_mlp_index(m)}",
    ),
)
# LogBinomial's constant buffers (bin indices, K - 1): recomputed by the model.
ZOEDEPTH_SKIP = (r"conditional_log_binomial\.log_binomial_transform\.(k_idx|K_minus_1)",)
# The attraction the released weights were trained with: ZoeDepth's attractors call
# `inv_attractor(dx)` without alpha/gamma, so config_zoedepth.json's alpha 1000 is never used
# and the function defaults (300, 2) are.
ZOEDEPTH_ATTRACTOR_ALPHA = 300.0
ZOEDEPTH_ATTRACTOR_GAMMA = 2


def _without_model_prefix(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Released ZoeDepth files put every key under "model."; the state dict without it."""
    return {k[len("model.") :] if k.startswith("model.") else k: v for k, v in state_dict.items()}


def import_zoedepth(
    state_dict: Mapping[str, np.ndarray],
    template: Variables,
    grid: tuple[int, int],
    what: str = "zoedepth",
) -> tuple[Variables, list[str]]:
    """ZoeDepth (N) checkpoint -> AVSNet variables of the "rgb" variant (MiDaS at "midas",
    `conv2`, the metric-bins head at "metric_bins"). `grid` as in `import_midas_dpt`.

    To start AVS-Net ("rgb_echoes") from it, merge the three subtrees:
    `for name in ("midas", "conv2", "metric_bins"): v = merge_pretrained(v, subtree(zoe, name),
    name)`; the echo encoder and the cross-attention keep their own initialisation.
    """
    return import_midas_dpt(
        _without_model_prefix(state_dict),
        template,
        grid,
        prefix="core.core.",
        flax_prefix="midas",
        extra_rules=ZOEDEPTH_HEAD_RULES,
        extra_skip=ZOEDEPTH_SKIP,
        what=what,
    )


def zoedepth_config_from_state_dict(
    state_dict: Mapping[str, np.ndarray],
    image_size: Sequence[int],
    bin_centers_type: str = "softplus",
) -> Any:
    """`config.model` (avs_jax.models.avsnet, variant "rgb") matching a ZoeDepth checkpoint.

    Shapes give every width; `bin_centers_type` cannot be read off them ("softplus" for
    ZoeD_M12_N, "normed" for ZoeD_M12_K, whose attractors predict 2 channels per attractor).
    The depth range is configuration, not weights; the attractors get what the released code
    ran (`ZOEDEPTH_ATTRACTOR_ALPHA`, `ZOEDEPTH_ATTRACTOR_GAMMA`), whatever the model's default.
    """
    from avs_jax.models.avsnet import default_model_config  # pylint: disable=C0415

    def out_ch(key: str) -> int:
        if key not in state_dict:
            raise WeightImportError(f"not a ZoeDepth state dict: no {key}")
        return int(state_dict[key].shape[0])

    c = default_model_config("paper")
    c.variant = "rgb"
    c.midas.update(midas_config_from_state_dict(state_dict, image_size, prefix="core.core."))
    n_levels = len(block_indices(state_dict, "attractors."))
    c.bins.n_bins = out_ch("seed_bin_regressor._net.2.weight")
    c.bins.bin_embedding_dim = out_ch("seed_projector._net.2.weight")
    c.bins.seed_mlp_dim = out_ch("seed_bin_regressor._net.0.weight")
    c.bins.mlp_dim = out_ch("projectors.0._net.0.weight")
    per_attractor = 2 if bin_centers_type == "normed" else 1
    c.bins.bin_centers_type = bin_centers_type
    c.bins.attractor_alpha = ZOEDEPTH_ATTRACTOR_ALPHA
    c.bins.attractor_gamma = ZOEDEPTH_ATTRACTOR_GAMMA
    c.bins.n_attractors = tuple(
        out_ch(f"attractors.{i}._net.2.weight") // per_attractor for i in range(n_levels)
    )
    return c


def cli_zoedepth(paths: Sequence[Path], args: Any) -> tuple[Variables, list[str], dict[str, Any]]:
    """A ZoeDepth checkpoint (ZoeD_M12_N.pt, "softplus" bins) -> AVSNet "rgb" variables, the
    skipped keys and `{"model_config": ...}` (the `config.model` that reproduces upstream,
    attractor alpha 300, for import.json)."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.avsnet import AVSNet  # pylint: disable=import-outside-toplevel

    if len(paths) != 1:
        raise WeightImportError(f"--source=zoedepth takes one file, got {len(paths)}")
    sd = _without_model_prefix(read_state_dict(paths[0]))
    c = zoedepth_config_from_state_dict(sd, image_size_arg(args), args.bin_centers_type)
    h, w = c.midas.image_size
    template = model_template(AVSNet(c), jnp.zeros((1, h, w, 3)), None, train=False)
    p = c.midas.patch_size
    print(
        f"ZoeDepth configuration read from {paths[0]}: midas {dict(c.midas)}, bins {dict(c.bins)}"
    )
    variables, skipped = import_zoedepth(sd, template, (h // p, w // p), what=str(paths[0]))
    return variables, skipped, {"model_config": c.to_dict()}
