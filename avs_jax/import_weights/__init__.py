"""Pretrained PyTorch weights (ResNet-18, MiDaS DPT, ZoeDepth, Monodepth2) as Flax variables.

The paper starts every network from public pretrained weights (docs/reference.md, "Pretrained
weights": no network at run time). Users hold them as PyTorch files; this package reads them
without PyTorch where it can (`.safetensors`, `.npz`; `.pth`/`.pt` need torch and import it
lazily), converts names and layouts to our NHWC Flax modules, and writes an orbax checkpoint of
`{"params": ..., "batch_stats": ...}` that `read_imported` reads back and `merge_pretrained`
places into a model's variables (what `config.init_from` uses, through
`avs_jax.train.pretrained.load_pretrained`).

Conversion is strict: every leaf of the Flax model must be filled from the state dict, every
tensor of the state dict must be used or be on the source's list of intentionally skipped keys
(e.g. torchvision's `fc.*`), and every shape must agree. Anything else raises
`WeightImportError` naming each key, so nothing is ever silently left at its random init.

Command line (one orbax checkpoint per model at --out; Monodepth2 writes OUT/depth, OUT/pose):

    python -m avs_jax.import_weights --source=resnet18 --in=resnet18.pth --out=/ckpt/resnet18 \
        [--in_channels=2 (echo encoder) | 6 (pose encoder)]
    python -m avs_jax.import_weights --source=monodepth2 \
        --in=encoder.pth,depth.pth,pose_encoder.pth,pose.pth --out=/ckpt/md2
    python -m avs_jax.import_weights --source=midas_dpt --in=dpt_beit_large_384.pt \
        --image_size=256,512 --out=/ckpt/midas
    python -m avs_jax.import_weights --source=zoedepth --in=ZoeD_M12_N.pt \
        --image_size=256,512 --out=/ckpt/zoedepth

Then, e.g. for the echo encoder of AVS-Net:
    variables = merge_pretrained(variables, read_imported("/ckpt/resnet18"), "echo_encoder")

Layout conventions (PyTorch -> Flax):
  Conv2d weight [O, I, kh, kw]            -> kernel [kh, kw, I, O] (HWIO)
  ConvTranspose2d weight [I, O, kh, kw]   -> kernel [kh, kw, I, O]: spatially flipped for
                                             flax ConvTranspose, as is for
                                             layers.ConvTransposeNonOverlap
  Linear weight [O, I]                    -> kernel [I, O]  (BEiT's fused qkv stays fused)
  BatchNorm weight/bias/running_mean/var  -> params scale/bias, batch_stats mean/var
  LayerNorm weight/bias                   -> scale/bias
  BEiT relative_position_bias_table       -> resized to the model's patch grid
  RGB stem conv1 [O, 3, 7, 7]             -> [O, 6, 7, 7] duplicated and halved (pose pairs)

Modules: `readers` (files -> state dicts), `layouts` (tensor conversions), `mapping` (names,
strict accounting), one per source (`resnet`, `monodepth2`, `midas`, `zoedepth`: rules, import
function, configuration read off the weights, command-line builder), `checkpoints` (write, read
back, merge into a model), `cli` (the command line), `errors` (`WeightImportError`).
"""

from avs_jax.import_weights.checkpoints import (
    merge_pretrained,
    read_imported,
    read_weights_npz,
    save_pretrained,
    save_weights_npz,
    subtree,
)
from avs_jax.import_weights.cli import SOURCES, main
from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.layouts import (
    adapt_input_channels,
    conv_kernel,
    conv_transpose_kernel,
    interpolate_rel_pos_table,
    linear_kernel,
    qkv_bias,
    split_qkv,
)
from avs_jax.import_weights.mapping import (
    ALWAYS_SKIPPED,
    Rule,
    Variables,
    map_state_dict,
    model_template,
    prefixed_rules,
)
from avs_jax.import_weights.midas import (
    MIDAS_BEIT_HOOKS,
    MIDAS_DPT_RULES,
    MIDAS_DPT_SKIP,
    import_midas_dpt,
    midas_config_from_state_dict,
)
from avs_jax.import_weights.monodepth2 import (
    MONODEPTH2_POSE_RULES,
    MONODEPTH2_SKIP,
    import_monodepth2_depth,
    import_monodepth2_pose,
    monodepth2_depth_rules,
)
from avs_jax.import_weights.readers import (
    StateDict,
    read_npz,
    read_safetensors,
    read_state_dict,
    read_torch,
    write_safetensors,
)
from avs_jax.import_weights.resnet import RESNET18_RULES, RESNET18_SKIP, import_resnet18
from avs_jax.import_weights.zoedepth import (
    ZOEDEPTH_ATTRACTOR_ALPHA,
    ZOEDEPTH_ATTRACTOR_GAMMA,
    ZOEDEPTH_HEAD_RULES,
    ZOEDEPTH_SKIP,
    import_zoedepth,
    zoedepth_config_from_state_dict,
)

__all__ = [
    # errors, readers
    "WeightImportError",
    "StateDict",
    "read_safetensors",
    "write_safetensors",
    "read_npz",
    "read_torch",
    "read_state_dict",
    # layouts
    "conv_kernel",
    "conv_transpose_kernel",
    "linear_kernel",
    "split_qkv",
    "qkv_bias",
    "adapt_input_channels",
    "interpolate_rel_pos_table",
    # mapping
    "Variables",
    "Rule",
    "ALWAYS_SKIPPED",
    "map_state_dict",
    "prefixed_rules",
    "model_template",
    # sources
    "RESNET18_RULES",
    "RESNET18_SKIP",
    "import_resnet18",
    "MONODEPTH2_SKIP",
    "MONODEPTH2_POSE_RULES",
    "monodepth2_depth_rules",
    "import_monodepth2_depth",
    "import_monodepth2_pose",
    "MIDAS_DPT_RULES",
    "MIDAS_DPT_SKIP",
    "MIDAS_BEIT_HOOKS",
    "midas_config_from_state_dict",
    "import_midas_dpt",
    "ZOEDEPTH_HEAD_RULES",
    "ZOEDEPTH_SKIP",
    "ZOEDEPTH_ATTRACTOR_ALPHA",
    "ZOEDEPTH_ATTRACTOR_GAMMA",
    "zoedepth_config_from_state_dict",
    "import_zoedepth",
    # checkpoints, command line
    "save_pretrained",
    "read_imported",
    "read_weights_npz",
    "save_weights_npz",
    "subtree",
    "merge_pretrained",
    "SOURCES",
    "main",
]
