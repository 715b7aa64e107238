"""Scale-invariant log loss (Eigen et al. 2014) as ZoeDepth/AdaBins train with it (paper eq. 4).

`g = log(pred + 1e-7) − log(gt + 1e-7)` over the valid pixels of the whole batch jointly (ZoeDepth
flattens `input[mask]` across the batch), the prediction first resized to the target size
(bilinear, align_corners=True), and `loss = alpha * sqrt(Var(g) + beta * mean(g)^2)` with the
unbiased variance (ddof=1), in fp32 (docs/reference.md). alpha = 10, beta = 1 − lambda = 0.15.

Paper eq. 4 writes `alpha * sqrt(mean(g^2) − lambda * mean(g)^2)` = `alpha * sqrt(Var_biased(g)
+ (1 − lambda) mean(g)^2)`: the same up to the ddof of the variance. Neither is invariant to
multiplying the prediction by a constant c: log c shifts every g, which leaves Var(g) unchanged but
changes the `beta * mean(g)^2` term. Only `lambda = 1` (beta = 0) gives an exactly scale-invariant
loss; lambda = 0.85 deliberately keeps 15% of the scale error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from avs_jax.models.layers import resize_bilinear

Array = jax.Array

# ZoeDepth's log epsilon.
LOG_EPS = 1e-7


def silog_terms(pred: Array, target: Array, mask: Array | None = None) -> tuple[Array, Array]:
    """Unbiased variance and mean of g over the valid pixels of the batch.

    pred [B, h, w, 1] or [B, h, w]; target [B, H, W] (metres, 0 = invalid); mask [B, H, W] bool
    (default target > 0). Masked sums, no boolean indexing, so it jits with static shapes.
    """
    pred = pred.astype(jnp.float32)
    if pred.ndim == 3:
        pred = pred[..., None]
    target = target.astype(jnp.float32)
    if pred.shape[1:3] != target.shape[1:3]:
        pred = resize_bilinear(pred, target.shape[1:3], align_corners=True)
    pred = pred[..., 0]
    if mask is None:
        mask = target > 0
    m = mask.astype(jnp.float32)
    g = jnp.log(pred + LOG_EPS) - jnp.log(target + LOG_EPS)
    g = jnp.where(mask, g, 0.0)
    n = jnp.sum(m)
    mean = jnp.sum(g) / n
    var = jnp.sum(m * (g - mean) ** 2) / (n - 1.0)
    return var, mean


def silog_loss(
    pred: Array, target: Array, mask: Array | None = None, alpha: float = 10.0, beta: float = 0.15
) -> Array:
    """alpha * sqrt(Var_{ddof=1}(g) + beta * mean(g)^2): a scalar fp32 (see module docstring)."""
    var, mean = silog_terms(pred, target, mask)
    return alpha * jnp.sqrt(var + beta * mean**2)
