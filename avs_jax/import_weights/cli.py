"""`python -m avs_jax.import_weights --source=... --in=FILE[,FILE] --out=DIR` (see the package).

One orbax checkpoint per model at --out (Monodepth2 writes OUT/depth and OUT/pose), and a line
per checkpoint naming what was intentionally skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from flax import traverse_util

from avs_jax.import_weights.checkpoints import save_pretrained
from avs_jax.import_weights.errors import WeightImportError
from avs_jax.import_weights.midas import cli_midas_dpt
from avs_jax.import_weights.monodepth2 import cli_monodepth2
from avs_jax.import_weights.resnet import cli_resnet18
from avs_jax.import_weights.zoedepth import cli_zoedepth

DESCRIPTION = (
    "Pretrained PyTorch weights (ResNet-18, MiDaS DPT, ZoeDepth, Monodepth2) as Flax variables."
)

# Each source returns either (variables, skipped[, metadata]) -> one checkpoint at --out, or a
# dict {part: (variables, skipped[, metadata])} -> one checkpoint per part at --out/part; the
# optional metadata dict (e.g. ZoeDepth's "model_config") goes into the part's import.json.
SOURCES: dict[str, Callable[[Sequence[Path], Any], Any]] = {
    "resnet18": cli_resnet18,
    "monodepth2": cli_monodepth2,
    "midas_dpt": cli_midas_dpt,
    "zoedepth": cli_zoedepth,
}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m avs_jax.import_weights --source=... --in=FILE[,FILE] --out=DIR`."""
    parser = argparse.ArgumentParser(
        prog="python -m avs_jax.import_weights", description=DESCRIPTION
    )
    parser.add_argument("--source", required=True, choices=sorted(SOURCES))
    parser.add_argument(
        "--in",
        dest="inputs",
        required=True,
        help="weight file(s), comma separated (.safetensors, .npz, .pth/.pt)",
    )
    parser.add_argument("--out", required=True, help="directory of the orbax checkpoint")
    parser.add_argument(
        "--in_channels",
        type=int,
        default=3,
        help="resnet18: input channels of the stem (6: pose pair, 2: echo)",
    )
    parser.add_argument(
        "--widths",
        default="64,64,128,256,512",
        help="resnet18: stem and stage widths (ResNet-18's by default)",
    )
    parser.add_argument(
        "--image_size",
        default="256,512",
        help="midas_dpt/zoedepth: H,W the model runs at (the BEiT position "
        "tables are resized to its patch grid); 256,512 is the paper's",
    )
    parser.add_argument(
        "--bin_centers_type",
        default="softplus",
        choices=("softplus", "normed"),
        help="zoedepth: softplus (ZoeD_M12_N) or normed (ZoeD_M12_K)",
    )
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.inputs.split(",") if p]
    try:
        result = SOURCES[args.source](paths, args)
    except WeightImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    parts = result if isinstance(result, dict) else {"": result}
    for part, (variables, skipped, *extra) in parts.items():
        n = sum(int(np.prod(np.shape(v))) for v in traverse_util.flatten_dict(variables).values())
        metadata = {
            "source": args.source,
            "part": part,
            "inputs": [str(p) for p in paths],
            "skipped": skipped,
            "num_values": n,
        }
        for more in extra:
            metadata.update(more)
        out = save_pretrained(Path(args.out) / part if part else args.out, variables, metadata)
        counters = [k for k in skipped if k.endswith("num_batches_tracked")]
        shown = [k for k in skipped if k not in counters]
        if counters:
            shown.append(f"{len(counters)} BatchNorm step counters")
        print(f"wrote {out} ({n} values); intentionally skipped: {', '.join(shown) or 'nothing'}")
    return 0
