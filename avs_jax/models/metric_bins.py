"""ZoeDepth's metric-bins head (Bhat et al. 2023), as AVS-Net uses it (paper Sec. 3.1, Fig. 3).

Seed bin regressor -> attractor layers over the decoder features (r4..r1) -> conditional log-
binomial over the bins -> depth = Σ_k p_k c_k. Conventions are docs/reference.md's "ZoeDepth
metric-bins head" (config_zoedepth.json values): every resize is bilinear with align_corners=True;
the next attractor level gets the raw projector output as its previous embedding. Bin centres,
attractor updates, the log-binomial and its softmax run in fp32 whatever the compute dtype, from
the last 1×1 conv of each (its output rounded to bf16 would put centres at 16-32 m on a 12.5 cm
grid): an attractor moves a centre by at most 1/(2 sqrt(alpha)) (2.9 cm at the default alpha 300,
1.6 cm at 1000), one or two bf16 steps of a centre at 2-4 m (1.6 cm), and a softmax at
temperatures down to 0.0212 is not bf16 arithmetic either.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from avs_jax.models.layers import Conv, resize_bilinear

Array = jax.Array

# ZoeDepth's small constants (not hyperparameters): activation floor of the normed regressor
# and attractor, and the p/t normalisation epsilon of the conditional log-binomial.
NORMED_EPS = 1e-3
P_EPS = 1e-4
# Epsilon of the Stirling form of log C(n, k).
STIRLING_EPS = 1e-7


def _resize(x: Array, size: Sequence[int]) -> Array:
    return resize_bilinear(x, tuple(size), align_corners=True)


class SeedBinRegressor(nn.Module):
    """Initial bin centres from the (fused) bottleneck features.

    "softplus" (ZoeDepth default): conv1×1 -> ReLU -> conv1×1 -> Softplus gives the centres
    directly (unbounded, positive). "normed": ReLU + 1e-3 gives widths, normalised to sum to
    (max - min); edges are min + cumsum(widths) and centres the midpoints: ordered, in [min, max].

    Returns `(b, centres)`, both [B, h, w, n_bins]: `b` is what the first attractor level moves
    (the centres themselves for "softplus", centres mapped to [0, 1] for "normed").
    """

    n_bins: int
    mlp_dim: int = 256
    kind: str = "softplus"
    min_depth: float = 1e-3
    max_depth: float = 10.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        y = nn.relu(Conv(self.mlp_dim, 1, dtype=self.dtype, name="conv1")(x))
        y = Conv(self.n_bins, 1, dtype=jnp.float32, name="conv2")(y)  # fp32: the centres
        if self.kind == "softplus":
            centres = nn.softplus(y)
            return centres, centres
        if self.kind != "normed":
            raise ValueError(
                f"SeedBinRegressor: kind must be 'softplus' or 'normed', got {self.kind!r}"
            )
        widths = nn.relu(y) + NORMED_EPS
        widths = widths / jnp.sum(widths, axis=-1, keepdims=True)
        span = self.max_depth - self.min_depth
        edges = self.min_depth + span * jnp.cumsum(widths, axis=-1)
        edges = jnp.concatenate([jnp.full_like(edges[..., :1], self.min_depth), edges], -1)
        centres = 0.5 * (edges[..., :-1] + edges[..., 1:])
        return (centres - self.min_depth) / span, centres


class Projector(nn.Module):
    """Bin embedding: conv1×1 in -> mlp_dim, ReLU, conv1×1 -> out_features."""

    out_features: int = 128
    mlp_dim: int = 128
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """[B, h, w, C] -> [B, h, w, out_features]."""
        y = nn.relu(Conv(self.mlp_dim, 1, dtype=self.dtype, name="conv1")(x))
        return Conv(self.out_features, 1, dtype=self.dtype, name="conv2")(y)


def _int_if_integral(gamma: float) -> float | int:
    # An integral exponent must stay an integer power: a float power of a negative dx is NaN.
    return int(gamma) if float(gamma).is_integer() else gamma


def inv_attractor(dx: Array, alpha: float, gamma: float) -> Array:
    """ZoeDepth's "inv" attraction: dx / (1 + alpha * dx**gamma), dx = attractor − centre."""
    return dx / (1.0 + alpha * dx ** _int_if_integral(gamma))


def exp_attractor(dx: Array, alpha: float, gamma: float) -> Array:
    """ZoeDepth's "exp" attraction: exp(−alpha |dx|**gamma) * dx."""
    return jnp.exp(-alpha * jnp.abs(dx) ** _int_if_integral(gamma)) * dx


def attract(
    centres: Array,
    attractors: Array,
    alpha: float,
    gamma: float,
    attractor_type: str = "inv",
    kind: str = "mean",
) -> Array:
    """Moves every bin centre towards the attractors: c + agg_a f(A_a − c).

    centres [..., n_bins], attractors [..., n_a] -> new centres [..., n_bins].
    """
    fn = {"inv": inv_attractor, "exp": exp_attractor}[attractor_type]
    delta = fn(attractors[..., :, None] - centres[..., None, :], alpha, gamma)  # [..., n_a, n_bins]
    agg = {"mean": jnp.mean, "sum": jnp.sum}[kind]
    return centres + agg(delta, axis=-2)


class AttractorLayer(nn.Module):
    """One attractor level: predicts n_attractors points per pixel and pulls the centres to them.

    `x = emb + upsample(prev_emb)`; centres upsampled to x's size. "softplus" centres (ZoeDepth's
    AttractorLayerUnnormed): A = Softplus(conv(ReLU(conv(x)))), the centres move in metres.
    "normed" (AttractorLayer): A = ReLU(...) + 1e-3 taking the first of each pair of channels
    (as ZoeDepth does), centres move in [0, 1] and the metric centres are
    sorted(clip(min + (max − min) b)).

    Returns `(b, centres)` [B, h, w, n_bins]: `b` feeds the next level, `centres` are metric.
    """

    n_attractors: int
    mlp_dim: int = 128
    alpha: float = 300.0
    gamma: float = 2.0
    attractor_type: str = "inv"
    kind: str = "mean"
    bin_centers_type: str = "softplus"
    min_depth: float = 1e-3
    max_depth: float = 10.0
    dtype: Any = None

    @nn.compact
    def __call__(self, emb: Array, b_prev: Array, prev_emb: Array | None) -> tuple[Array, Array]:
        """emb [B, h, w, E], b_prev [B, h', w', n_bins], prev_emb [B, h', w', E]."""
        size = emb.shape[1:3]
        x = emb if prev_emb is None else emb + _resize(prev_emb, size).astype(emb.dtype)
        normed = self.bin_centers_type == "normed"
        n_out = 2 * self.n_attractors if normed else self.n_attractors
        y = nn.relu(Conv(self.mlp_dim, 1, dtype=self.dtype, name="conv1")(x))
        a = Conv(n_out, 1, dtype=jnp.float32, name="conv2")(y)  # fp32: the attractor points
        if normed:
            # ZoeDepth computes A/sum over each pair and then discards it, keeping channel 0.
            a = (nn.relu(a) + NORMED_EPS)[..., 0::2]
        else:
            a = nn.softplus(a)
        b = attract(
            _resize(b_prev.astype(jnp.float32), size),
            a,
            self.alpha,
            self.gamma,
            self.attractor_type,
            self.kind,
        )
        if not normed:
            return b, b
        centres = self.min_depth + (self.max_depth - self.min_depth) * b
        centres = jnp.clip(jnp.sort(centres, axis=-1), self.min_depth, self.max_depth)
        return b, centres


def log_binomial_coefficient(n: float, k: np.ndarray, eps: float = STIRLING_EPS) -> np.ndarray:
    """log C(n, k) in ZoeDepth's Stirling form: n log n − k log k − (n−k) log(n−k+eps).

    Computed in numpy float32 at trace time (n and k are static): inside XLA the constant
    folding of `(n+eps) − (k+eps) + eps` may round to 0 at k = n and give 0 · log 0 = NaN.
    """
    n = np.float32(n) + np.float32(eps)
    k = np.asarray(k, np.float32) + np.float32(eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = (n - k) * np.log(n - k + np.float32(eps))
    return n * np.log(n) - k * np.log(k) - np.nan_to_num(tail)


def log_binomial_probs(p: Array, t: Array, n_bins: int) -> Array:
    """Bin probabilities softmax_k(y_k / t), y_k = log C(K−1, k) + k log p + (K−1−k) log(1−p).

    p, t [...] (p in (0, 1), temperature t > 0) -> [..., K], fp32. p and 1−p are clamped to
    [1e-4, 1] as in ZoeDepth.
    """
    p = p.astype(jnp.float32)[..., None]
    t = t.astype(jnp.float32)[..., None]
    k_np = np.arange(n_bins, dtype=np.float32)
    log_c = jnp.asarray(log_binomial_coefficient(n_bins - 1, k_np))
    k = jnp.asarray(k_np)
    km1 = jnp.float32(n_bins - 1)
    one_minus_p = jnp.clip(1.0 - p, P_EPS, 1.0)
    p = jnp.clip(p, P_EPS, 1.0)
    y = log_c + k * jnp.log(p) + (km1 - k) * jnp.log(one_minus_p)
    return jax.nn.softmax(y / t, axis=-1)


class ConditionalLogBinomial(nn.Module):
    """Per-pixel bin probabilities from a log-binomial with predicted p and temperature.

    Input `cat[x, cond]` -> conv1×1 -> (in+cond)//2, GELU (exact erf) -> conv1×1 -> 4, Softplus;
    `p = (p0+1e-4)/(p0+p1+2e-4)`, `t = (t0+1e-4)/(t0+t1+2e-4)` mapped to [min_temp, max_temp].
    """

    n_bins: int = 64
    min_temp: float = 0.0212
    max_temp: float = 50.0
    bottleneck_factor: int = 2
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, cond: Array) -> Array:
        """x [B, H, W, C], cond [B, H, W, E] -> probabilities [B, H, W, n_bins] (fp32)."""
        z = jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)
        hidden = z.shape[-1] // self.bottleneck_factor
        z = nn.gelu(Conv(hidden, 1, dtype=self.dtype, name="conv1")(z), approximate=False)
        pt = nn.softplus(Conv(4, 1, dtype=jnp.float32, name="conv2")(z))  # fp32: p and t
        pt = pt + P_EPS
        p = pt[..., 0] / (pt[..., 0] + pt[..., 1])
        t = pt[..., 2] / (pt[..., 2] + pt[..., 3])
        t = (self.max_temp - self.min_temp) * t + self.min_temp
        return log_binomial_probs(p, t, self.n_bins)


class MetricBinsHead(nn.Module):
    """From fused bin features and the MiDaS decoder to metric depth (ZoeDepth's forward).

    Attributes mirror `config.model.bins`: n_bins, bin_embedding_dim, bin_centers_type,
    n_attractors (one level per decoder feature), attractor_alpha/gamma/kind/type,
    min_temp/max_temp, min_depth/max_depth, seed_mlp_dim (256), mlp_dim (128).
    """

    n_bins: int = 64
    bin_embedding_dim: int = 128
    bin_centers_type: str = "softplus"
    n_attractors: Sequence[int] = (16, 8, 4, 1)
    attractor_alpha: float = 300.0
    attractor_gamma: float = 2.0
    attractor_kind: str = "mean"
    attractor_type: str = "inv"
    min_temp: float = 0.0212
    max_temp: float = 50.0
    min_depth: float = 1e-3
    max_depth: float = 10.0
    seed_mlp_dim: int = 256
    mlp_dim: int = 128
    dtype: Any = None

    @nn.compact
    def __call__(
        self, bin_features: Array, blocks: Sequence[Array], out_conv: Array, rel_depth: Array
    ) -> dict[str, Array]:
        """bin_features [B, h, w, C] (L^{A,V}, or conv2(l4_rn) without echoes);
        blocks r4..r1; out_conv [B, H, W, 32]; rel_depth [B, H, W, 1] ->

        `metric_depth` [B, H, W, 1], `bin_centers` [B, H, W, n_bins] (metric, at output
        resolution), `probs` [B, H, W, n_bins].
        """
        if len(blocks) != len(self.n_attractors):
            raise ValueError(
                f"MetricBinsHead: {len(blocks)} decoder features for "
                f"{len(self.n_attractors)} attractor levels"
            )
        b, _ = SeedBinRegressor(
            self.n_bins,
            self.seed_mlp_dim,
            self.bin_centers_type,
            self.min_depth,
            self.max_depth,
            self.dtype,
            name="seed_bin_regressor",
        )(bin_features)
        prev_emb = Projector(
            self.bin_embedding_dim, self.mlp_dim, self.dtype, name="seed_projector"
        )(bin_features)
        centres = None
        for i, (feat, n_a) in enumerate(zip(blocks, self.n_attractors)):
            emb = Projector(
                self.bin_embedding_dim, self.mlp_dim, self.dtype, name=f"projectors_{i}"
            )(feat)
            b, centres = AttractorLayer(
                n_a,
                self.mlp_dim,
                self.attractor_alpha,
                self.attractor_gamma,
                self.attractor_type,
                self.attractor_kind,
                self.bin_centers_type,
                self.min_depth,
                self.max_depth,
                self.dtype,
                name=f"attractors_{i}",
            )(emb, b, prev_emb)
            prev_emb = emb  # raw projector output, not the sum (ZoeDepth)
        size = out_conv.shape[1:3]
        last = jnp.concatenate([out_conv, _resize(rel_depth, size).astype(out_conv.dtype)], -1)
        cond = _resize(prev_emb, size)
        probs = ConditionalLogBinomial(
            self.n_bins,
            self.min_temp,
            self.max_temp,
            dtype=self.dtype,
            name="conditional_log_binomial",
        )(last, cond)
        centres = _resize(centres, size)
        depth = jnp.sum(probs * centres, axis=-1, keepdims=True)
        return {"metric_depth": depth, "bin_centers": centres, "probs": probs}
