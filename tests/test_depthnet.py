"""DepthNet, PoseNet and the light DepthNet: sizes of the real networks, output conventions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.models.depthnet import DepthDecoder, DepthNet
from avs_jax.models.posenet import PoseNet
from avs_jax.models.relative_model import build_depth_net, relative_model_config
from avs_jax.train.state import init_compiler_options


def _count(params):
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def _abstract_params(model, channels=3):
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, channels)), train=False)
    )["params"]


def test_monodepth2_depth_decoder_has_the_published_layout():
    params = _abstract_params(DepthNet())
    conv = lambda cin, cout, k=3: cin * cout * k * k + cout  # noqa: E731
    # Monodepth2's decoder, num_ch_enc (64, 64, 128, 256, 512), num_ch_dec (16, 32, 64, 128, 256).
    expected = (
        conv(512, 256)
        + conv(256 + 256, 256)
        + conv(256, 128)
        + conv(128 + 128, 128)
        + conv(128, 1)
        + conv(128, 64)
        + conv(64 + 64, 64)
        + conv(64, 1)
        + conv(64, 32)
        + conv(32 + 64, 32)
        + conv(32, 1)
        + conv(32, 16)
        + conv(16, 16)
        + conv(16, 1)
    )
    assert _count(params["decoder"]) == expected == 3_152_724
    assert _count(params["encoder"]) == 11_689_512 - 513_000  # torchvision ResNet-18 minus fc
    # Monodepth2 key names survive for weight import (scale 4 has no disparity head).
    assert {"upconv_4_0", "upconv_4_1", "dispconv_0", "dispconv_3"} <= set(params["decoder"])
    assert "dispconv_4" not in params["decoder"]


def test_posenet_size_and_output_scaling():
    model = PoseNet()
    params = _abstract_params(model, channels=6)
    # ResNet-18 with a 6-channel stem + squeeze 1×1, two 3×3, and 1×1 → 6 × 2 frames.
    decoder = (512 * 256 + 256) + 2 * (256 * 256 * 9 + 256) + (256 * 12 + 12)
    assert _count(params) == 11_176_512 + 7 * 7 * 3 * 64 + decoder
    # With a zero last kernel, the output is 0.01 × its bias, split (axis-angle, translation).
    tiny = PoseNet((8, 8, 16, 16, 32), (1, 1, 1, 1), hidden=8)
    x = jax.random.uniform(jax.random.key(1), (2, 64, 64, 6))
    variables = jax.jit(
        lambda x: tiny.init(jax.random.key(0), x, train=False),
        compiler_options=init_compiler_options(),
    )(x)
    bias = jnp.arange(12.0)
    last = variables["params"]["decoder"]["pose_2"]
    variables["params"]["decoder"]["pose_2"] = {
        "kernel": jnp.zeros_like(last["kernel"]),
        "bias": bias,
    }
    axisangle, translation = jax.jit(lambda v, x: tiny.apply(v, x, train=False))(variables, x)
    np.testing.assert_allclose(np.asarray(axisangle), [[0.0, 0.01, 0.02]] * 2, atol=1e-7)
    np.testing.assert_allclose(np.asarray(translation), [[0.03, 0.04, 0.05]] * 2, atol=1e-7)
    # rotation_scale rescales the axis-angle alone (the quickstart's tiny pose net uses 0.3).
    turned = PoseNet((8, 8, 16, 16, 32), (1, 1, 1, 1), hidden=8, rotation_scale=0.3)
    axisangle, translation = jax.jit(lambda v, x: turned.apply(v, x, train=False))(variables, x)
    np.testing.assert_allclose(np.asarray(axisangle), [[0.0, 0.3, 0.6]] * 2, atol=1e-6)
    np.testing.assert_allclose(np.asarray(translation), [[0.03, 0.04, 0.05]] * 2, atol=1e-7)


def test_light_depthnet_has_about_three_million_parameters():
    n = _count(_abstract_params(build_depth_net(relative_model_config("lite", "full"))))
    assert 2_500_000 <= n <= 3_500_000, n


@pytest.mark.parametrize("name", ["monodepth2", "lite"])
def test_disparities_are_sigmoids_at_each_scale_and_bf16_stays_close(name):
    config = relative_model_config(name, "tiny")
    model = build_depth_net(config)
    x = jax.random.uniform(jax.random.key(2), (2, 64, 96, 3))
    variables = jax.jit(
        lambda x: model.init(jax.random.key(0), x, train=False),
        compiler_options=init_compiler_options(),
    )(x)
    # Training mode: BatchNorm normalises with batch statistics, as in every training step.
    disps, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x
    )
    assert len(disps) == len(config.scales)
    for s, d in enumerate(disps):
        assert d.shape == (2, 64 // 2**s, 96 // 2**s, 1) and d.dtype == jnp.float32
        assert 0.0 < float(d.min()) and float(d.max()) < 1.0
    config.dtype = "bfloat16"
    model_bf16 = build_depth_net(config)
    disps_bf16, _ = jax.jit(
        lambda v, x: model_bf16.apply(v, x, train=True, mutable=["batch_stats"])
    )(variables, x)
    for d, d16 in zip(disps, disps_bf16):
        assert d16.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(d16), np.asarray(d), atol=2e-2)


def test_depth_decoder_uses_reflection_padding():
    """Constant features give a constant disparity map: zero padding would change the borders,
    reflection padding does not (ELU, nearest upsampling and concatenation are per-pixel)."""
    decoder = DepthDecoder((4, 4, 8), scales=(0, 1))
    feats = [jnp.full((1, 16 // 2**i, 16 // 2**i, c), 0.7) for i, c in enumerate((3, 5, 6))]
    init = jax.jit(decoder.init, compiler_options=init_compiler_options())
    variables = init(jax.random.key(0), feats)
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # non-zero biases everywhere
    for disp in jax.jit(decoder.apply)(variables, feats):
        disp = np.asarray(disp)
        np.testing.assert_allclose(disp, disp[0, 0, 0, 0], rtol=1e-5)
