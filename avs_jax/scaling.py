"""Stage 2 of AVS-Net: put metric scale on a relative prediction (paper Sec. 3.2.2).

Per image, over the valid pixels given by `mask`:

* "no": the relative (or zero-shot) prediction as it is;
* "median" (paper eq. 3): `M = R * median(M_p) / median(R)`;
* "mean_std": R standardised, then given M_p's mean and standard deviation,
  `M = (R - mean(R)) / std(R) * std(M_p) + mean(M_p)` (the paper's ablation, after [11, 24]);
* "gt_median": `M = R * median(gt) / median(R)`, the oracle reference row (Monodepth2's
  evaluation protocol), for which the scale source is the ground truth itself.

In the evaluation the mask is the valid ground-truth pixels, as in Monodepth2's median scaling:
the paper writes eq. 3 without a mask and evaluates "only valid pixels" (Sec. 4.2), leaving open
which pixels set the scale. A deployed system has no ground truth; pass it all pixels (or those
in M_p's range).

`R` may be a depth or a disparity (`kind`); a disparity is inverted first, and one <= 0 has no
depth (NaN). Medians follow numpy's convention (the mean of the two middle values for an even
count). Jittable, batched.

Non-finite values (NaN, inf; a disparity <= 0) are data these functions cannot raise on under
jit; they leave them out: each statistic is taken over the pixels of `mask` where its map is
finite, and a non-finite pixel of R stays non-finite in the output (no value is made up for
it). An image where R or the reference has no such pixel has no scale: it is returned unscaled
(factor 1). Each map's own pixels rather than those where both are finite: the median of R is
then the same for every reference, computed once when jitted with several (the export). Inputs
are checked, with errors naming them, where they enter: external files in
avs_jax/evaluation/external.py, models' maps in avs_jax/evaluation/scaled_eval.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

METHODS = ("no", "median", "mean_std", "gt_median")


def to_depth(rel: Array, kind: str) -> Array:
    """A relative prediction as depth: `kind` "depth" unchanged, "disparity" inverted.

    A disparity <= 0 (or NaN) gives NaN. It used to be clamped to 1e-6, a 1e6 m depth that
    passed for a prediction; the models' own disparities never get here (their relative
    predictors return depth, `geometry.disp_to_depth`), outside ones are checked on loading.
    """
    if kind == "depth":
        return rel
    if kind == "disparity":
        pos = rel > 0
        return jnp.where(pos, 1.0 / jnp.where(pos, rel, 1.0), jnp.nan)
    raise ValueError(f"kind must be 'depth' or 'disparity', got {kind!r}")


def _ordered_key(x: Array) -> Array:
    """float32 -> uint32 with the same order (sign-magnitude bits made monotone)."""
    i = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    return jnp.where(i >> 31 == 1, ~i, i | jnp.uint32(0x80000000))


def _from_key(k: Array) -> Array:
    i = jnp.where(k >> 31 == 1, k & jnp.uint32(0x7FFFFFFF), ~k)
    return jax.lax.bitcast_convert_type(i, jnp.float32)


def _kth_smallest(key: Array, mask: Array, k: Array) -> Array:
    """Per image, the k-th smallest (1-based) masked key: bisection on the 32-bit key.

    32 counting passes instead of a sort: exact, and on CPU far faster than sorting the ~1M
    pixels of a 720×1280 map (bench/evaluate.py). key, mask `[B, N]`; k `[B]` -> `[B]` uint32.
    """

    def body(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = ((key <= mid[:, None]) & mask).sum(axis=1) >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    lo = jnp.zeros(key.shape[:1], jnp.uint32)
    hi = jnp.full(key.shape[:1], 0xFFFFFFFF, jnp.uint32)
    return jax.lax.fori_loop(0, 32, body, (lo, hi))[0]


def masked_median(x: Array, mask: Array) -> Array:
    """Median of each image's masked finite values: `[B, H, W]`, `[B, H, W]` bool -> `[B]`.

    numpy's convention (mean of the two middle values); NaN and inf are left out (as if
    masked); 0 for an image without such a value.
    """
    b = x.shape[0]
    finite = jnp.isfinite(x).reshape(b, -1)
    # Non-finite values get the largest key, above every finite one (at most 0xFF7FFFFF), and
    # are not counted in n: the k <= n smallest masked keys are finite. No new mask: the
    # counting passes read the caller's, which is shared between maps (scaled_eval's `valid`).
    key = jnp.where(finite, _ordered_key(x.reshape(b, -1)), jnp.uint32(0xFFFFFFFF))
    m = mask.reshape(b, -1)
    n = (m & finite).sum(axis=1)
    lo = _from_key(_kth_smallest(key, m, jnp.maximum((n + 1) // 2, 1)))
    hi = _from_key(_kth_smallest(key, m, jnp.maximum(n // 2 + 1, 1)))
    # n odd: the middle one twice; n even: the two middle ones.
    hi = jnp.where(n % 2 == 1, lo, hi)
    return jnp.where(n > 0, 0.5 * (lo + hi), 0.0)


def masked_mean_std(x: Array, mask: Array) -> tuple[Array, Array]:
    """Mean and (population) standard deviation of each image's masked finite values.

    `[B, H, W]`, `[B, H, W]` bool -> `[B]`, `[B]`; NaN and inf are left out (as if masked);
    0, 0 for an image without such a value.
    """
    mask = mask & jnp.isfinite(x)
    n = jnp.maximum(mask.sum(axis=(1, 2)), 1).astype(jnp.float32)
    mean = jnp.where(mask, x, 0.0).sum(axis=(1, 2)) / n
    var = jnp.where(mask, (x - mean[:, None, None]) ** 2, 0.0).sum(axis=(1, 2)) / n
    return mean, jnp.sqrt(var)


def _has_scale(rel_depth: Array, reference: Array, mask: Array) -> Array:
    """`[B]`: R and the reference each have a finite pixel in `mask`."""

    def any_finite(x: Array) -> Array:
        return (mask & jnp.isfinite(x)).any(axis=(1, 2))

    return any_finite(rel_depth) & any_finite(reference)


def scale_factor_median(rel_depth: Array, reference: Array, mask: Array) -> Array:
    """Eq. 3's per-image factor `median(reference) / median(R)` -> `[B]`.

    Each median over the pixels of `mask` where its map is finite; 1 where undefined (no such
    pixel, or a median <= 0).
    """
    med_ref = masked_median(reference, mask)
    med_rel = masked_median(rel_depth, mask)
    ok = (med_rel > 0) & (med_ref > 0)
    return jnp.where(ok, med_ref / jnp.where(ok, med_rel, 1.0), 1.0)


def apply_scaling(
    rel: Array,
    method: str,
    mask: Array,
    reference: Array | None = None,
    kind: str = "depth",
    eps: float = 1e-8,
) -> Array:
    """Metric depth from a relative prediction, per image.

    Args:
      rel: relative prediction `[B, H, W]` (depth or disparity, see `kind`).
      method: one of METHODS.
      mask: `[B, H, W]` bool, the pixels whose statistics define the scale (the valid
        ground-truth pixels in the evaluation).
      reference: `[B, H, W]` the scale source: the pseudo-dense metric depth M_p for "median"
        and "mean_std", the ground truth for "gt_median"; unused for "no".
      kind: "depth" or "disparity".

    Returns:
      `[B, H, W]` metric depth. Each statistic leaves out the pixels where its map (R as
      depth, or the reference) is not finite; those pixels of R stay non-finite. An image
      where either map has no finite pixel in `mask` is returned unscaled (R as depth).
    """
    if method not in METHODS:
        raise ValueError(f"scaling method must be one of {METHODS}, got {method!r}")
    r = to_depth(rel.astype(jnp.float32), kind)
    if method == "no":
        return r
    if reference is None:
        raise ValueError(f"scaling method {method!r} needs a reference map")
    reference = reference.astype(jnp.float32)
    if method in ("median", "gt_median"):
        return r * scale_factor_median(r, reference, mask)[:, None, None]
    mean_r, std_r = masked_mean_std(r, mask)
    mean_m, std_m = masked_mean_std(reference, mask)
    z = (r - mean_r[:, None, None]) / (std_r[:, None, None] + eps)
    scaled = z * std_m[:, None, None] + mean_m[:, None, None]
    return jnp.where(_has_scale(r, reference, mask)[:, None, None], scaled, r)
