"""Cross-modal attention (paper eq. 1-2) against a hand computation."""

import jax
import numpy as np

from avs_jax.models.cross_attention import CrossModalAttention


def _dense(p, x):
    return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


def test_single_key_returns_projected_value_plus_residual():
    # With one key the softmax is 1 for every query: Att = W_O(W_V(P f_A)) whatever f_V.
    f_v = jax.random.normal(jax.random.key(0), (2, 3, 4, 8))
    f_a = jax.random.normal(jax.random.key(1), (2, 1, 1, 12))
    attn = CrossModalAttention(num_heads=2)
    variables = attn.init(jax.random.key(2), f_v, f_a)
    # Non-zero biases so they are checked too.
    variables = jax.tree.map(lambda v: v + 0.1, variables)
    out = np.asarray(attn.apply(variables, f_v, f_a))
    p = variables["params"]
    a = _dense(p["audio_proj"], np.asarray(f_a).reshape(2, 12))
    expected_att = _dense(p["out"], _dense(p["value"], a))  # [B, C]
    expected = expected_att[:, None, None, :] + np.asarray(f_v)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_attention_weights_follow_query_key_similarity():
    # Two keys; identity-like projections: each query takes the value of the key it matches.
    c = 4
    eye = np.eye(c, dtype=np.float32)
    params = {
        name: {"kernel": eye * s, "bias": np.zeros(c, np.float32)}
        for name, s in (
            ("audio_proj", 1.0),
            ("query", 10.0),
            ("key", 10.0),
            ("value", 1.0),
            ("out", 1.0),
        )
    }
    keys = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32).reshape(1, 1, 2, c)
    queries = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32).reshape(1, 1, 2, c)
    out = np.asarray(CrossModalAttention(num_heads=1).apply({"params": params}, queries, keys))
    # softmax of [100/2, 0] is one-hot to 7 digits: output = matched key + residual.
    np.testing.assert_allclose(out[0, 0], 2 * queries[0, 0], atol=1e-5)
