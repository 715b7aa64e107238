"""Accumulates Table 1 (M_p of each stage-1 variant) and Table 2 (scaled relative models).

Everything is computed at the ground truth's resolution (paper Sec. 4.2): the predictions are
resized to it, the scale statistics are taken over its valid pixels, and the metrics use the
same mask. One jitted function computes every row of both tables for a batch on the device.

Every map a model gives (M_p, a relative depth or disparity) must be finite and > 0 at every
pixel of a real example: `ScalingEvaluator.update` raises BadInputError naming the model, where
it came from and the sample otherwise (a diverged checkpoint), before anything is averaged. The
check is a per-image count on the device (`count_bad`), read on the host with the rows.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from avs_jax.errors import BadInputError
from avs_jax.metrics import MetricAccumulator, per_image_metrics, resize_to, valid_mask
from avs_jax.scaling import masked_mean_std, masked_median, to_depth

Array = jax.Array
SCALING_METHODS = ("median", "mean_std")
MEAN_STD_EPS = 1e-8  # as avs_jax.scaling.apply_scaling
# Table 1's reference rows in the evaluator: ORACLE_PREFIX + variant, ORACLE_PREFIX + "constant".
ORACLE_PREFIX = "gt_median/"


@functools.partial(
    jax.jit, static_argnames=("min_depth", "max_depth", "kinds", "methods", "oracle")
)
def batch_rows(
    gt: Array,
    mp: dict[str, Array],
    rel: dict[str, Array],
    *,
    min_depth: float,
    max_depth: float,
    kinds: tuple[tuple[str, str], ...],
    methods: tuple[str, ...] = SCALING_METHODS,
    oracle: bool = True,
):
    """Per-image metrics of every table row for one batch.

    Args:
      gt: `[B, H, W]` ground truth in metres.
      mp: stage-1 variant -> `[B, h, w]` pseudo-dense metric depth M_p.
      rel: relative model -> `[B, h', w']` relative prediction (depth or disparity).
      kinds: (model, "depth" | "disparity") pairs for `rel`.

    Returns:
      (table1 rows {variant: metrics}, table2 rows {model: {source: {method: metrics}}}) with
      `[B]` arrays. With `oracle`, table1 also holds Table 1's references under
      `ORACLE_PREFIX + variant` (M_p scaled by the ratio of the ground truth's median to its
      own: its structure alone) and `ORACLE_PREFIX + "constant"` (each image's ground-truth
      median everywhere).
    """
    size = gt.shape[1:]
    valid = valid_mask(gt, max_depth)
    mp_full = {v: resize_to(m, size) for v, m in mp.items()}
    metrics = functools.partial(per_image_metrics, gt=gt, min_depth=min_depth, max_depth=max_depth)
    t1 = {v: metrics(m) for v, m in mp_full.items()}
    t2 = {}
    kind_of = dict(kinds)
    # Each map's median and mean/std once (a sort of ~1M pixels is the costly part), shared by
    # every row that uses it; the formulas are those of avs_jax/scaling.py.
    med = {v: masked_median(m, valid) for v, m in mp_full.items()}
    mom = {v: masked_mean_std(m, valid) for v, m in mp_full.items()}
    if oracle:
        med["gt"] = masked_median(gt, valid)
        # The no-structure reference: each image's ground-truth median everywhere. A relative
        # model whose GT-median row is not below it has learnt no useful depth structure. It does
        # not depend on the model: computed once, reported in every model's block.
        constant = metrics(jnp.broadcast_to(med["gt"][:, None, None], gt.shape))
        for v, m in mp_full.items():
            t1[ORACLE_PREFIX + v] = metrics(m * _median_ratio(med["gt"], med[v])[:, None, None])
        t1[ORACLE_PREFIX + "constant"] = constant
    for model, r in rel.items():
        # evaluate() hands relative maps over at the ground truth's size, a disparity resized
        # before it is inverted (Monodepth2's order); one at another size is inverted first.
        r_full = resize_to(to_depth(r.astype(jnp.float32), kind_of[model]), size)
        med_r = masked_median(r_full, valid)
        mean_r, std_r = masked_mean_std(r_full, valid)
        z = (r_full - mean_r[:, None, None]) / (std_r[:, None, None] + MEAN_STD_EPS)
        rows = {"no": {"none": metrics(r_full)}}
        for v in list(mp_full) + (["gt"] if oracle else []):
            scaled = {"median": r_full * _median_ratio(med[v], med_r)[:, None, None]}
            if v != "gt" and "mean_std" in methods:
                mean_m, std_m = mom[v]
                scaled["mean_std"] = z * std_m[:, None, None] + mean_m[:, None, None]
            rows[v] = {meth: metrics(x) for meth, x in scaled.items() if meth in methods}
        if oracle:
            rows["gt"]["constant"] = constant
        t2[model] = rows
    return t1, t2


def _median_ratio(target: Array, source: Array) -> Array:
    """Per image target / source medians `[B]`, 1 where either is not > 0 (eq. 3's factor)."""
    ok = (source > 0) & (target > 0)
    return jnp.where(ok, target / jnp.where(source > 0, source, 1.0), 1.0)


@jax.jit
def count_bad(maps: dict[str, Array]) -> dict[str, tuple[Array, Array]]:
    """Per map `[B, h, w]`, the pixels of each image that are NaN/inf, and finite but <= 0.

    Its own program (~1 ms): inside batch_rows the same counts cost 15% of a batch of two at
    720x1280 (bench/evaluate.py's maps: 360 ms against 312 ms), apparently by changing how XLA
    fuses the resizes of the maps they read.
    """

    def count(x: Array) -> tuple[Array, Array]:
        finite = jnp.isfinite(x)
        return (~finite).sum(axis=(1, 2)), (finite & (x <= 0)).sum(axis=(1, 2))

    return {k: count(x) for k, x in maps.items()}


class ScalingEvaluator:
    """Accumulates both tables over a test set, batch by batch.

    `origins` (optional) says where each model came from (model or variant name -> run dir or
    folder), for the error a bad map raises.
    """

    def __init__(
        self,
        min_depth: float,
        max_depth: float,
        methods: tuple[str, ...] = SCALING_METHODS,
        oracle: bool = True,
        origins: Mapping[str, str] | None = None,
    ):
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.methods, self.oracle = tuple(methods), oracle
        self.origins = dict(origins or {})
        self.t1: dict[str, MetricAccumulator] = {}
        self.t2: dict[str, dict[str, dict[str, MetricAccumulator]]] = {}

    def update(
        self,
        gt,
        mp: dict[str, Array],
        rel: dict[str, tuple[Array, str]],
        example_mask: np.ndarray | None = None,
        table2_mask: np.ndarray | None = None,
        sample_ids: Sequence[str] | None = None,
    ) -> None:
        """Adds a batch: `gt` `[B, H, W]`, M_p per variant, (prediction, kind) per model.

        `example_mask` `[B]` marks the real examples (not padding); `table2_mask` (default: the
        same) those Table 2 counts, e.g. without samples an external model has no prediction
        for, so that Table 1 does not depend on which external predictions exist. `sample_ids`
        (optional, `[B]`) name the samples in errors.

        Raises BadInputError, and adds nothing, when a map of a counted example holds a NaN,
        inf or value <= 0.
        """
        if table2_mask is None:
            table2_mask = example_mask
        kinds = tuple(sorted((m, k) for m, (_, k) in rel.items()))
        mp = {k: jnp.asarray(v) for k, v in mp.items()}
        rel_maps = {m: jnp.asarray(r) for m, (r, _) in rel.items()}
        bad_mp, bad_rel = count_bad(mp), count_bad(rel_maps)
        t1, t2 = batch_rows(
            jnp.asarray(gt),
            mp,
            rel_maps,
            min_depth=self.min_depth,
            max_depth=self.max_depth,
            kinds=kinds,
            methods=self.methods,
            oracle=self.oracle,
        )
        # M_p is checked on the examples Table 1 counts, relative maps on those of Table 2.
        checks = [(v, m, "depth", example_mask, bad_mp[v]) for v, m in mp.items()]
        checks += [(m, rel_maps[m], k, table2_mask, bad_rel[m]) for m, (_, k) in rel.items()]
        for name, x, kind, rows, counts in checks:
            self._check(name, x.shape[1:], kind, *counts, rows, sample_ids)
        for v, m in t1.items():
            self.t1.setdefault(v, MetricAccumulator()).update(m, example_mask)
        for model, sources in t2.items():
            for s, methods in sources.items():
                for meth, m in methods.items():
                    (
                        self.t2.setdefault(model, {})
                        .setdefault(s, {})
                        .setdefault(meth, MetricAccumulator())
                        .update(m, table2_mask)
                    )

    def _check(
        self,
        name: str,
        shape: tuple[int, ...],
        kind: str,
        n_nonfinite: Array,
        n_nonpositive: Array,
        rows: np.ndarray | None,
        sample_ids: Sequence[str] | None,
    ) -> None:
        """BadInputError for the first counted example whose map of `name` is not usable."""
        n_nonfinite, n_nonpositive = np.asarray(n_nonfinite), np.asarray(n_nonpositive)
        counted = np.ones(len(n_nonfinite), bool) if rows is None else np.asarray(rows, bool)
        bad = np.flatnonzero(counted & ((n_nonfinite > 0) | (n_nonpositive > 0)))
        if not bad.size:
            return
        i = bad[0]
        what = [
            f"{n} {w}"
            for n, w in ((int(n_nonfinite[i]), "NaN/inf"), (int(n_nonpositive[i]), "<= 0"))
            if n
        ]
        origin = f" ({self.origins[name]})" if self.origins.get(name) else ""
        sample = repr(str(sample_ids[i])) if sample_ids is not None else f"#{i} of the batch"
        raise BadInputError(
            f"model {name!r}{origin}, sample {sample}: {' and '.join(what)} of its "
            f"{int(np.prod(shape))} predicted {kind} values; they must be finite and > 0 "
            "(a diverged checkpoint?)"
        )

    def table1(self) -> dict[str, dict]:
        """{variant: metrics} of M_p."""
        return {v: acc.result() for v, acc in self.t1.items() if not v.startswith(ORACLE_PREFIX)}

    def table1_oracle(self) -> dict[str, dict]:
        """Table 1's references (with `oracle`): {variant: metrics of M_p scaled by the ground
        truth's median, "constant": metrics of that median everywhere}."""
        n = len(ORACLE_PREFIX)
        return {v[n:]: acc.result() for v, acc in self.t1.items() if v.startswith(ORACLE_PREFIX)}

    def table2(self) -> dict[str, dict]:
        return {
            model: {
                s: {meth: acc.result() for meth, acc in ms.items()} for s, ms in sources.items()
            }
            for model, sources in self.t2.items()
        }
