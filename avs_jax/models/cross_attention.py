"""Multi-head cross-modal attention fusing visual bin features with echo features (paper eq. 1-2).

`Att(f_V, f_A) = softmax(Q^V (K^A)^T / sqrt(s)) V^A` with `Q^V = W_Q f_V`, `K^A = W_K f_A`,
`V^A = W_V f_A` (eq. 1), per head, `s` = the head width; the heads are concatenated and
projected by `W_O`, and `L^{A,V} = Att(f_V, f_A) + f_V` (eq. 2). Queries are the tokens of the
bottleneck after ZoeDepth's `conv2` (f_V, [B, h, w, C]); keys and values are the tokens of the
ResNet-18 echo encoder's last map, first projected to f_V's width C by a linear layer, since the
paper gives f_A and f_V different widths (512 and 256) but one attention space.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

Array = jax.Array


class CrossModalAttention(nn.Module):
    """L^{A,V} = MHA(queries from f_V, keys/values from f_A) + f_V.

    Attributes:
      num_heads: attention heads (C must be divisible by it).
      dtype: compute dtype; the softmax is computed in fp32.
    """

    num_heads: int = 8
    dtype: Any = None

    @nn.compact
    def __call__(self, f_v: Array, f_a: Array) -> Array:
        """f_v [B, h, w, C], f_a [B, ha, wa, Ca] -> [B, h, w, C]."""
        b, h, w, c = f_v.shape
        nh = self.num_heads
        if c % nh:
            raise ValueError(f"CrossModalAttention: width {c} not divisible by {nh} heads")
        dh = c // nh
        q_tokens = f_v.reshape(b, h * w, c)
        a_tokens = f_a.reshape(b, -1, f_a.shape[-1])
        a_tokens = nn.Dense(c, dtype=self.dtype, name="audio_proj")(a_tokens)
        q = nn.Dense(c, dtype=self.dtype, name="query")(q_tokens).reshape(b, h * w, nh, dh)
        k = nn.Dense(c, dtype=self.dtype, name="key")(a_tokens).reshape(b, -1, nh, dh)
        v = nn.Dense(c, dtype=self.dtype, name="value")(a_tokens).reshape(b, -1, nh, dh)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(dh)
        attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        y = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, h * w, c)
        y = nn.Dense(c, dtype=self.dtype, name="out")(y)
        return y.reshape(b, h, w, c) + f_v.astype(y.dtype)
