"""Conv lowerings agree with each other and with a direct numpy convolution; so do the resize's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.models import layers
from avs_jax.models.layers import Conv, resize_bilinear, upsample_nearest


def _numpy_conv(x, k, stride, pad):
    """Direct cross-correlation, NHWC / HWIO, PyTorch padding semantics."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw, _, cout = k.shape
    b, h, w, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((b, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", patch, k)
    return out


@pytest.mark.parametrize("lowering", ["xla", "im2col"])
@pytest.mark.parametrize("kernel,stride,pad", [(3, 1, 1), (3, 2, 1), (7, 2, 3), (1, 2, 0)])
def test_conv_matches_numpy(lowering, kernel, stride, pad):
    x = np.random.default_rng(0).normal(size=(2, 9, 11, 3)).astype(np.float32)
    conv = Conv(5, kernel, stride, pad, use_bias=True, lowering=lowering)
    variables = conv.init(jax.random.key(0), x)
    variables = jax.tree.map(lambda v: v + 0.5, variables)  # non-zero bias
    y = conv.apply(variables, x)
    k = np.asarray(variables["params"]["kernel"])
    ref = _numpy_conv(x, k, stride, pad) + np.asarray(variables["params"]["bias"])
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4)


def test_resize_bilinear_align_corners_hand_case():
    x = jnp.array([0.0, 1.0, 2.0]).reshape(1, 1, 3, 1)
    y = resize_bilinear(x, (1, 5), align_corners=True)
    # align_corners: output samples at 0, 0.5, 1, 1.5, 2 in input coordinates.
    np.testing.assert_allclose(np.asarray(y).ravel(), [0, 0.5, 1, 1.5, 2], atol=1e-6)
    up = upsample_nearest(jnp.arange(4.0).reshape(1, 2, 2, 1))
    np.testing.assert_array_equal(
        np.asarray(up)[0, :, :, 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    )


def test_interp_matrix_rows_are_linear_interpolation_weights():
    for n_in, n_out in [(3, 5), (8, 64), (64, 8), (5, 1), (1, 4), (7, 7)]:
        m = layers._interp_matrix(n_in, n_out)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
        assert ((m != 0).sum(axis=1) <= 2).all() and (m >= 0).all()
        # A linear ramp is reproduced exactly at the align-corners sample positions.
        ramp = np.arange(n_in, dtype=np.float32)
        pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
        np.testing.assert_allclose(m @ ramp, pos, atol=1e-4)


@pytest.mark.parametrize(
    "shape,size",
    [
        ((2, 8, 16, 3), (64, 128)),
        ((1, 64, 128, 1), (96, 200)),
        ((1, 5, 7, 4), (3, 2)),
        ((1, 4, 4, 2), (1, 9)),
    ],
)
def test_resize_bilinear_matmul_and_gather_agree_with_gradients(monkeypatch, shape, size):
    """The CPU's matmul form and the accelerators' gather form: same values and gradients."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal((shape[0], *size, shape[3])), jnp.float32)
    out = {}
    for matmul in (False, True):
        monkeypatch.setattr(layers, "use_matmul_resize", lambda m=matmul: m)
        g = jax.grad(lambda x: (resize_bilinear(x, size) * w).sum())(x)
        out[matmul] = (np.asarray(resize_bilinear(x, size)), np.asarray(g))
    np.testing.assert_allclose(out[True][0], out[False][0], atol=2e-6)
    np.testing.assert_allclose(out[True][1], out[False][1], rtol=1e-5, atol=1e-5)


def test_resize_lowering_follows_the_environment(monkeypatch):
    x = jnp.zeros((1, 4, 6, 2))
    prims = lambda: {
        e.primitive.name
        for e in jax.make_jaxpr(  # noqa: E731
            lambda x: resize_bilinear(x, (8, 12))
        )(x).jaxpr.eqns
    }
    monkeypatch.setenv(layers.RESIZE_ENV, "gather")
    assert "gather" in prims() and "dot_general" not in prims()
    monkeypatch.setenv(layers.RESIZE_ENV, "matmul")
    assert "dot_general" in prims() and "gather" not in prims()
    monkeypatch.setenv(layers.RESIZE_ENV, "fast")
    with pytest.raises(ValueError, match="AVS_JAX_RESIZE='fast'"):
        resize_bilinear(x, (8, 12))


@pytest.mark.parametrize("lowering", ["xla", "im2col"])
@pytest.mark.parametrize("groups,dilation", [(4, 1), (4, 2), (2, 3)])
def test_grouped_dilated_conv_matches_numpy(lowering, groups, dilation):
    """Depthwise / grouped and dilated convs (the light DepthNet's blocks) on both lowerings."""
    x = np.random.default_rng(1).normal(size=(2, 9, 10, 4)).astype(np.float32)
    conv = Conv(
        4,
        3,
        1,
        dilation,
        use_bias=False,
        feature_group_count=groups,
        kernel_dilation=dilation,
        lowering=lowering,
    )
    variables = conv.init(jax.random.key(0), x)
    y = np.asarray(conv.apply(variables, x))
    k = np.asarray(variables["params"]["kernel"])  # [3, 3, 4 / groups, 4]
    # Reference: a dense kernel, zero between groups, dilated by inserting zero taps.
    cg = 4 // groups
    dense = np.zeros((3, 3, 4, 4), np.float32)
    for g in range(groups):
        dense[:, :, g * cg : (g + 1) * cg, g * cg : (g + 1) * cg] = k[
            :, :, :, g * cg : (g + 1) * cg
        ]
    kd = (3 - 1) * dilation + 1
    dilated = np.zeros((kd, kd, 4, 4), np.float32)
    dilated[::dilation, ::dilation] = dense
    np.testing.assert_allclose(y, _numpy_conv(x, dilated, 1, dilation), rtol=1e-4, atol=1e-4)
