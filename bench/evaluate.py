"""Evaluation throughput at the paper's ground-truth resolution (720×1280).

  python bench/evaluate.py [--batch=8] [--batches=5]

Times what the evaluation does per batch once the networks have run: resize M_p of two stage-1
variants and one relative prediction to 720×1280, scale it (no / median / mean-std / GT oracle)
and compute the seven metrics of every Table 1 and Table 2 row (avs_jax/evaluation/scaled_eval.py,
one jitted function), plus the tiny AVS-Net forward pass at 64×128. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from avs_jax.evaluation.scaled_eval import batch_rows  # noqa: E402
from avs_jax.models.avsnet import AVSNet, default_model_config  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=5)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    b = a.batch
    gt = jnp.asarray(rng.uniform(0, 12, (b, 720, 1280)).astype(np.float32))
    mp = {
        v: jnp.asarray(rng.uniform(1, 12, (b, 256, 512)).astype(np.float32))
        for v in ("rgb", "rgb_echoes")
    }
    rel = {"monodepth2": jnp.asarray(rng.uniform(0.1, 1, (b, 192, 640)).astype(np.float32))}
    kw = dict(min_depth=1e-3, max_depth=12.0, kinds=(("monodepth2", "disparity"),))
    t0 = time.perf_counter()
    jax.block_until_ready(batch_rows(gt, mp, rel, **kw))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(a.batches):
        t = time.perf_counter()
        jax.block_until_ready(batch_rows(gt, mp, rel, **kw))
        times.append(time.perf_counter() - t)
    metrics_s = float(np.median(times))

    cfg = default_model_config("tiny")
    model = AVSNet(cfg)
    image, echo = jnp.zeros((b, 64, 128, 3)), jnp.zeros((b, 64, 128, 2))
    variables = model.init(jax.random.key(0), image, echo, train=False)
    fwd = jax.jit(lambda v, i, e: model.apply(v, i, e, train=False)["metric_depth"])
    jax.block_until_ready(fwd(variables, image, echo))
    t = time.perf_counter()
    for _ in range(a.batches):
        jax.block_until_ready(fwd(variables, image, echo))
    fwd_s = (time.perf_counter() - t) / a.batches
    print(
        json.dumps(
            {
                "bench": "evaluate",
                "device": jax.devices()[0].device_kind,
                "batch": b,
                "gt_hw": [720, 1280],
                "rows_per_image": 1 * 2
                + 1 * (1 + 2 * 2 + 2),  # T1: 2; T2: no, 2x2 scaled, 2 oracle
                "metrics_compile_s": round(compile_s, 2),
                "metrics_images_per_s": round(b / metrics_s, 2),
                "tiny_avsnet_forward_images_per_s": round(b / fwd_s, 2),
                "load_avg": os.getloadavg()[0],
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
