"""MiDaS v3.1 BEiT DPT (isl-org/MiDaS) -> avs_jax.models.midas.MiDaS.

Upstream: `pretrained.model` is timm's Beit; `pretrained.act_postprocessK` a Sequential
[readout, Transpose, Unflatten, 1x1 conv, resample] (readout "project" = Sequential(Linear,
GELU)); `scratch.layerK_rn`, `scratch.refinenetK` (resConfUnit1/2 with conv1/conv2, out_conv)
and the head `scratch.output_conv` = [conv3x3, Interpolate, conv3x3, ReLU, conv1x1, ReLU, Id].
The model's configuration is read off the state dict's shapes (`midas_config_from_state_dict`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.layouts import interpolate_rel_pos_table
from avs_jax.import_weights.mapping import (
    Rule,
    Variables,
    get_path,
    map_state_dict,
    model_template,
    prefixed_rules,
)
from avs_jax.import_weights.readers import read_state_dict

MIDAS_DPT_RULES = (
    Rule(r"encoder/patch_embed", "pretrained.model.patch_embed.proj"),
    Rule(r"encoder", "pretrained.model"),  # cls_token (and pos_embed of ViTs)
    Rule(r"encoder/blocks_(\d+)", r"pretrained.model.blocks.\1"),  # gamma_1, gamma_2
    Rule(r"encoder/blocks_(\d+)/attn", r"pretrained.model.blocks.\1.attn"),  # q/v bias, table
    Rule(r"encoder/blocks_(\d+)/attn/(qkv|proj)", r"pretrained.model.blocks.\1.attn.\2"),
    Rule(r"encoder/blocks_(\d+)/(norm1|norm2)", r"pretrained.model.blocks.\1.\2"),
    Rule(r"encoder/blocks_(\d+)/mlp_fc(\d)", r"pretrained.model.blocks.\1.mlp.fc\2"),
    Rule(
        r"encoder/act_postprocess(\d)/readout_project", r"pretrained.act_postprocess\1.0.project.0"
    ),
    Rule(r"encoder/act_postprocess(\d)/conv1x1", r"pretrained.act_postprocess\1.3"),
    Rule(
        r"encoder/act_postprocess([12])/resample",
        r"pretrained.act_postprocess\1.4",
        "conv_transpose_scatter",
    ),
    Rule(r"encoder/act_postprocess(\d)/resample", r"pretrained.act_postprocess\1.4"),
    Rule(r"(layer\d_rn)", r"scratch.\1"),
    Rule(r"(refinenet\d)/(resConfUnit\d)/(conv\d)", r"scratch.\1.\2.\3"),
    Rule(r"(refinenet\d)/out_conv", r"scratch.\1.out_conv"),
    Rule(r"head_conv1", "scratch.output_conv.0"),
    Rule(r"head_conv2", "scratch.output_conv.2"),
    Rule(r"head_conv3", "scratch.output_conv.4"),
)
# Not used by DPT's forward: the classifier side of timm's Beit, the index buffers (recomputed
# by the model), and refinenet4's first residual unit (refinenet4 gets no skip input).
MIDAS_DPT_SKIP = (
    r"pretrained\.model\.(norm|fc_norm|head)\..*",
    r".*relative_position_index",
    r".*k_bias",
    r"scratch\.refinenet4\.resConfUnit1\..*",
)

# MiDaS's hooks per BEiT depth (midas/dpt_depth.py): BEiT-L/16 and BEiT-B/16.
MIDAS_BEIT_HOOKS = {24: (5, 11, 17, 23), 12: (2, 5, 8, 11)}


def block_indices(state_dict: Mapping[str, np.ndarray], prefix: str) -> list[int]:
    """The sorted indices N of the keys "`prefix`N." (e.g. the transformer blocks)."""
    rx = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := rx.match(k))})


def midas_config_from_state_dict(
    state_dict: Mapping[str, np.ndarray], image_size: Sequence[int], prefix: str = ""
) -> dict[str, Any]:
    """MiDaS(...) keyword arguments read off a MiDaS BEiT DPT state dict (e.g. BEiT-L/16-384:
    embed 1024, 24 blocks, 16 heads, hooks 5/11/17/23, reassemble 256/512/1024/1024)."""

    def get(key: str) -> np.ndarray:
        if prefix + key not in state_dict:
            raise WeightImportError(f"not a MiDaS BEiT DPT state dict: no {prefix + key}")
        return state_dict[prefix + key]

    embed = get("pretrained.model.patch_embed.proj.weight")
    depth = len(block_indices(state_dict, prefix + "pretrained.model.blocks."))
    if depth not in MIDAS_BEIT_HOOKS:
        raise WeightImportError(
            f"MiDaS BEiT with {depth} blocks: known depths are {sorted(MIDAS_BEIT_HOOKS)}"
        )
    return dict(
        image_size=tuple(int(v) for v in image_size),
        embed_dim=int(embed.shape[0]),
        depth=depth,
        num_heads=int(get("pretrained.model.blocks.0.attn.relative_position_bias_table").shape[1]),
        patch_size=int(embed.shape[2]),
        hooks=MIDAS_BEIT_HOOKS[depth],
        reassemble_features=tuple(
            int(get(f"pretrained.act_postprocess{k}.3.weight").shape[0]) for k in range(1, 5)
        ),
        features=int(get("scratch.layer1_rn.weight").shape[0]),
        head_features=int(get("scratch.output_conv.2.weight").shape[0]),
        use_rel_pos_bias=True,
        use_abs_pos_emb=False,
    )


def _midas_table_transforms(
    state_dict: Mapping[str, np.ndarray],
    template_midas: Variables,
    grid: tuple[int, int],
    prefix: str,
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Relative-position tables resized from the checkpoint's square grid to the model's grid."""
    out = {}
    for name, sub in template_midas["params"]["encoder"].items():
        if not name.startswith("blocks_") or "relative_position_bias_table" not in sub["attn"]:
            continue
        key = f"{prefix}pretrained.model.blocks.{name[7:]}.attn.relative_position_bias_table"
        if key not in state_dict:
            continue  # reported as missing by map_state_dict
        rows = state_dict[key].shape[0]
        n = int(round(np.sqrt(rows - 3)))  # 2·g − 1 offsets per axis
        if n * n != rows - 3 or n % 2 == 0:
            raise WeightImportError(f"{key}: {rows} rows is not the table of a square patch grid")
        old = ((n + 1) // 2, (n + 1) // 2)
        out[key] = lambda t, old=old: interpolate_rel_pos_table(t, old, grid)
    return out


def import_midas_dpt(
    state_dict: Mapping[str, np.ndarray],
    template: Variables,
    grid: tuple[int, int],
    prefix: str = "",
    flax_prefix: str = "",
    extra_rules: Sequence[Rule] = (),
    extra_skip: Sequence[str] = (),
    what: str = "midas_dpt",
) -> tuple[Variables, list[str]]:
    """MiDaS BEiT DPT state dict -> avs_jax.models.midas.MiDaS variables.

    Args:
      grid: the model's patch grid (image_size // patch_size); each block's relative-position
        table is resized to it from the checkpoint's (square) grid as MiDaS does at run time.
      prefix: PyTorch prefix of the DPT ("core.core." inside a ZoeDepth checkpoint).
      flax_prefix: Flax path of the MiDaS module inside `template` ("midas" in AVSNet).
      extra_rules / extra_skip: more rules and skips for what surrounds the DPT (ZoeDepth).
    Blocks after the last hook (they do not reach DPT's output) are reported as skipped.
    """
    sub = (
        template
        if not flax_prefix
        else {c: get_path(template[c], flax_prefix.split("/")) for c in ("params",)}
    )
    n_blocks = sum(1 for k in sub["params"]["encoder"] if k.startswith("blocks_"))
    unused = [
        i for i in block_indices(state_dict, prefix + "pretrained.model.blocks.") if i >= n_blocks
    ]
    skip = [re.escape(prefix) + s for s in MIDAS_DPT_SKIP]
    skip += [re.escape(f"{prefix}pretrained.model.blocks.{i}.") + ".*" for i in unused]
    rules = prefixed_rules(MIDAS_DPT_RULES, flax_prefix, prefix.rstrip("."))
    return map_state_dict(
        state_dict,
        template,
        (*rules, *extra_rules),
        (*skip, *extra_skip),
        _midas_table_transforms(state_dict, sub, tuple(grid), prefix),
        what,
    )


def image_size_arg(args: Any) -> tuple[int, int]:
    """`--image_size=H,W` -> (H, W)."""
    try:
        h, w = (int(v) for v in args.image_size.split(","))
    except ValueError as e:
        raise WeightImportError(f"--image_size={args.image_size!r}: expected H,W") from e
    return h, w


def cli_midas_dpt(paths: Sequence[Path], args: Any) -> tuple[Variables, list[str]]:
    """A MiDaS v3.1 BEiT DPT file (dpt_beit_large_384.pt, dpt_beit_base_384.pt) -> MiDaS
    variables for --image_size (the model's configuration is read off the file)."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from avs_jax.models.midas import MiDaS  # pylint: disable=import-outside-toplevel

    if len(paths) != 1:
        raise WeightImportError(f"--source=midas_dpt takes one file, got {len(paths)}")
    sd = read_state_dict(paths[0])
    kwargs = midas_config_from_state_dict(sd, image_size_arg(args))
    template = model_template(MiDaS(**kwargs), jnp.zeros((1, *kwargs["image_size"], 3)))
    p = kwargs["patch_size"]
    grid = (kwargs["image_size"][0] // p, kwargs["image_size"][1] // p)
    variables, skipped = import_midas_dpt(sd, template, grid, what=str(paths[0]))
    print(f"MiDaS configuration read from {paths[0]}: {kwargs}")
    return variables, skipped
