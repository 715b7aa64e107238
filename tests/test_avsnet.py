"""AVS-Net composition: the three variants, the stage-1 task and the config (the overfit check,
through the real input pipeline, is in test_stage1_integration.py)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from avs_jax.config_files import load_config
from avs_jax.models.avsnet import AVSNet
from avs_jax.train.avsnet_task import AVSNetTask
from avs_jax.train.state import data_mesh, init_variables


def _get_config(arg: str) -> ml_collections.ConfigDict:
    return load_config("avsnet", arg)


def _test_config(variant: str) -> ml_collections.ConfigDict:
    """The "tiny" config made smaller still, so that compiling stays quick on 2 cores."""
    config = _get_config(f"tiny,{variant}")
    config.model.midas.image_size = (32, 64)
    config.model.midas.depth = 2
    config.model.midas.hooks = (0, 1, 1, 1)
    return config


def _samples(n: int = 4, h: int = 32, w: int = 64) -> dict:
    """Scenes whose depth scale is told by the echo (an arrival-time peak) and by the image."""
    rs = np.random.RandomState(0)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    images, echoes, depths = [], [], []
    for i in range(n):
        scale = 1.5 + 1.5 * i
        depth = scale * (1.0 + 0.5 * yy + 0.3 * np.sin(6 * xx + i))
        depth[rs.rand(h, w) < 0.1] = 0.0  # sensor holes
        image = np.stack(
            [0.5 + 0.4 * np.sin(10 * xx / (1 + 0.5 * i)), 0.5 + 0.4 * yy, np.full_like(xx, i / n)],
            -1,
        )
        peak = np.exp(-((xx - scale / 8.0) ** 2) / 0.01)
        echo = np.stack([peak, 0.8 * peak], -1) * (1 + 0.1 * yy[..., None])
        images.append(image)
        echoes.append(echo)
        depths.append(depth)
    return {"image": np.float32(images), "echo": np.float32(echoes), "depth": np.float32(depths)}


def test_config_arguments():
    paper = _get_config("")
    assert paper.model.variant == "rgb_echoes"
    assert paper.model.midas.embed_dim == 1024 and paper.model.midas.depth == 24
    assert tuple(paper.model.midas.hooks) == (5, 11, 17, 23)
    assert tuple(paper.model.midas.image_size) == (256, 512)
    assert paper.model.max_depth == 30.0 and paper.model.bins.n_bins == 64
    assert tuple(paper.model.bins.n_attractors) == (16, 8, 4, 1)
    assert _get_config("rgb").model.variant == "rgb"
    tiny_echoes = _get_config("tiny,echoes")
    assert tiny_echoes.model.variant == "echoes" and tiny_echoes.model.midas.embed_dim == 32
    with pytest.raises(ValueError, match="unknown"):
        _get_config("huge")


@pytest.fixture(scope="module")
def rgb_echoes():
    task = AVSNetTask(_test_config("rgb_echoes"))
    batch = _samples(2)
    variables = jax.jit(task.init_variables)(jax.random.key(0), batch)
    return task, batch, variables


def test_initialisation_compiled_for_speed_gives_the_same_variables(rgb_echoes):
    """`init_variables` compiles at a lower XLA:CPU level (state.init_compiler_options); its
    variables must be bitwise those of XLA's default, so that a run starts where it did."""
    task, batch, variables = rgb_echoes
    fast = init_variables(task, jax.random.key(0), batch, data_mesh())
    leaves, ref = jax.tree.leaves(fast), jax.tree.leaves(variables)
    assert len(leaves) == len(ref) > 50
    for a, b in zip(leaves, ref):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Inside another trace (JAX takes compiler options at the top level only) it still works.
    shapes = jax.eval_shape(lambda: init_variables(task, jax.random.key(0), batch, data_mesh()))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), shapes) == jax.tree.map(
        lambda x: (x.shape, x.dtype), variables
    )


def test_rgb_echoes_forward_inside_bin_range(rgb_echoes):
    task, batch, variables = rgb_echoes
    out = jax.jit(lambda v, i, e: task.model.apply(v, i, e, train=False))(
        variables, batch["image"], batch["echo"]
    )
    depth, centres, probs = (np.asarray(out[k]) for k in ("metric_depth", "bin_centers", "probs"))
    assert depth.shape == (2, 32, 64, 1)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # Σ p_k c_k is a convex combination of the centres.
    assert np.all(depth[..., 0] >= centres.min(-1) - 1e-5)
    assert np.all(depth[..., 0] <= centres.max(-1) + 1e-5)
    assert np.all(depth > 0)


def test_rgb_variant_has_no_echo_params():
    task = AVSNetTask(_test_config("rgb"))
    batch = _samples(1)
    variables = jax.eval_shape(task.init_variables, jax.random.key(0), batch)
    assert set(variables["params"]) == {"midas", "conv2", "metric_bins"}
    assert variables["batch_stats"] == {}


def test_echoes_variant_depth_in_range():
    config = _test_config("echoes")
    task = AVSNetTask(config)
    batch = _samples(1)
    v = init_variables(task, jax.random.key(0), batch, data_mesh())
    assert set(v["params"]) == {"echo_encoder", "echo_decoder"}
    depth = np.asarray(jax.jit(task.predict)(v, batch["image"], batch["echo"]))
    assert depth.shape == (1, 32, 64, 1)
    assert np.all(depth > config.model.min_depth) and np.all(depth < config.model.max_depth)


def test_log_magnitude_option_is_the_log_of_the_input():
    """`echo.log_magnitude` (quickstart only; the paper feeds the raw magnitude) = log(e + floor)."""
    assert not _get_config("").model.echo.log_magnitude
    config = _test_config("echoes")
    batch = _samples(1)
    raw = AVSNetTask(config)
    v = init_variables(raw, jax.random.key(0), batch, data_mesh())
    config.model.echo.log_magnitude = True
    logged = AVSNetTask(config)
    floor = config.model.echo.log_floor
    a = np.asarray(jax.jit(logged.predict)(v, batch["image"], batch["echo"]))
    b = np.asarray(jax.jit(raw.predict)(v, batch["image"], np.log(batch["echo"] + floor)))
    c = np.asarray(jax.jit(raw.predict)(v, batch["image"], batch["echo"]))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    assert np.abs(a - c).max() > 1e-3  # the option does change what the encoder sees


def test_gradients_reach_echo_encoder_and_labels(rgb_echoes):
    task, batch, variables = rgb_echoes
    params = variables["params"]
    state = {"batch_stats": variables["batch_stats"]}
    grads = jax.jit(jax.grad(lambda p: task.loss_and_metrics(p, state, batch, None, True)[0]))(
        params
    )
    echo_norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads["echo_encoder"]))
    attn_norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads["cross_attention"]))
    assert float(echo_norm) > 0 and float(attn_norm) > 0
    labels = traverse_util.flatten_dict(task.param_labels(params))
    assert labels[("midas", "encoder", "patch_embed", "kernel")] == "encoder"
    assert (
        labels[("midas", "encoder", "blocks_0", "attn", "relative_position_bias_table")]
        == "encoder"
    )
    assert labels[("midas", "layer1_rn", "kernel")] == "default"
    assert labels[("echo_encoder", "conv1", "kernel")] == "default"
    assert set(labels.values()) == {"encoder", "default"}


def test_eval_metrics_perfect_prediction_values(rgb_echoes):
    """Validation computes the tables' metrics (avs_jax/metrics.py) per image, then their mean
    over the batch's images, with the image count for the set's weighted mean."""
    from avs_jax.metrics import batch_means

    gt = jnp.asarray(_samples(2)["depth"])
    pred = gt * 1.1
    m, count = batch_means(pred, gt, 1e-3, 30.0)
    # Reference in float64 from the float32 inputs the function gets. Each of an image's N
    # positive terms carries a few eps of rounding, and a float32 sum of N positive terms is
    # within (N - 1) eps of the exact sum in any order of summation (XLA's order differs by
    # CPU): so rtol (N + 4) eps, not a last-bit tolerance against 0.1.
    g, p = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    valid = g > 0
    n = int(valid.sum(axis=(1, 2)).max())
    rtol = (n + 4) * np.finfo(np.float32).eps
    abs_rel = np.mean([np.mean(np.abs(pi - gi)[vi] / gi[vi]) for pi, gi, vi in zip(p, g, valid)])
    rmse = np.mean([np.sqrt(np.mean((pi - gi)[vi] ** 2)) for pi, gi, vi in zip(p, g, valid)])
    np.testing.assert_allclose(abs_rel, 0.1, rtol=1e-6)  # float32(1.1 gt) is 1.1 gt to 1 ulp
    np.testing.assert_allclose(float(m["abs_rel"]), abs_rel, rtol=rtol)
    np.testing.assert_allclose(float(m["rmse"]), rmse, rtol=rtol)
    assert float(m["a1"]) == 1.0 and int(count) == 2
    # An image without a valid pixel (a padded row) drops out of the mean and the count.
    m2, count2 = batch_means(pred, gt.at[1].set(0.0), 1e-3, 30.0)
    assert int(count2) == 1
    np.testing.assert_allclose(float(m2["abs_rel"]), float(m["abs_rel"]), rtol=2 * rtol)


def test_eval_silog_matches_loss_and_bf16_forward(rgb_echoes):
    task, batch, variables = rgb_echoes
    params = variables["params"]
    state = {"batch_stats": variables["batch_stats"]}

    @jax.jit
    def both(params, state):
        loss, _ = task.loss_and_metrics(params, state, batch, None, False)
        return loss, task.eval_metrics(params, state, batch)

    loss, metrics = both(params, state)
    np.testing.assert_allclose(float(metrics["silog"]), float(loss), rtol=1e-5)
    assert 0 <= float(metrics["a1"]) <= 1 and float(metrics["rmse"]) > 0

    # bf16 compute with fp32 params: softmax / log-binomial / bins stay fp32, so the output is
    # finite, the probabilities normalised, and the depth close to the fp32 one.
    config = _test_config("rgb_echoes")
    config.model.dtype = "bfloat16"
    bf16 = AVSNet(ml_collections.FrozenConfigDict(config.model))
    out16 = jax.jit(lambda v: bf16.apply(v, batch["image"], batch["echo"], train=False))(variables)
    out32 = jax.jit(lambda v: task.model.apply(v, batch["image"], batch["echo"], train=False))(
        variables
    )
    d16 = np.asarray(out16["metric_depth"], np.float32)
    d32 = np.asarray(out32["metric_depth"])
    assert out16["probs"].dtype == jnp.float32 and np.all(np.isfinite(d16))
    np.testing.assert_allclose(np.asarray(out16["probs"]).sum(-1), 1.0, rtol=1e-5)
    assert np.median(np.abs(d16 - d32) / d32) < 0.05


def test_a_batch_of_padding_leaves_the_validation_silog_alone(rgb_echoes):
    """Multi-host validation ends with batches of padding only (no depth at all): their SILog,
    a mean over no pixel, used to enter the set's mean as NaN with the batch's size as weight
    (and stage 1's best checkpoint is ranked by it in the quickstart)."""
    from avs_jax.train.loop import _weighted_mean

    task, batch, variables = rgb_echoes
    params = variables["params"]
    state = {"batch_stats": variables["batch_stats"]}
    metrics = jax.jit(task.eval_metrics)
    real = jax.device_get(metrics(params, state, batch))
    padding = jax.device_get(
        metrics(params, state, {k: np.zeros_like(v) for k, v in batch.items()})
    )
    n = len(batch["depth"])
    assert float(real["weight/silog"]) == n and float(padding["weight/silog"]) == 0
    set_mean = _weighted_mean([(n, real), (n, padding)])
    np.testing.assert_allclose(set_mean["silog"], float(real["silog"]), rtol=1e-6)


def test_paper_config_parameter_counts():
    """BEiT-L/16 DPT + ResNet-18 at 256×512, by shape only (no compute), against hand counts."""
    task = AVSNetTask(_get_config(""))
    batch = {
        "image": jax.ShapeDtypeStruct((1, 256, 512, 3), jnp.float32),
        "echo": jax.ShapeDtypeStruct((1, 256, 512, 2), jnp.float32),
    }
    params = jax.eval_shape(task.init_variables, jax.random.key(0), batch)["params"]

    def count(tree):
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))

    d, heads, table = 1024, 16, (2 * 16 - 1) * (2 * 32 - 1) + 3  # 16×32 patch grid
    block = (
        2 * d
        + 3 * d * d
        + 2 * d
        + table * heads
        + d * d
        + d
        + 2 * d
        + 2 * d
        + 4 * d * d
        + 4 * d
        + 4 * d * d
        + d
    )
    patch_embed = 16 * 16 * 3 * d + d
    readout = 4 * (2 * d * d + d)
    convs = sum(d * c + c for c in (256, 512, 1024, 1024))
    resample = (4 * 4 * 256 * 256 + 256) + (2 * 2 * 512 * 512 + 512) + (9 * 1024 * 1024 + 1024)
    assert count(params["midas"]["encoder"]) == (
        24 * block + patch_embed + d + readout + convs + resample
    )
    # torchvision ResNet-18 without fc is 11,176,512; conv1 takes 2 channels, not 3.
    assert count(params["echo_encoder"]) == 11_176_512 - 64 * 7 * 7


def test_conv_midas_needs_a_whole_resnet_layout():
    from avs_jax.models.avsnet import validate_model_config

    config = _test_config("rgb")
    config.model.midas.conv_widths = (8, 8, 16, 16)  # the stem and three stages only
    config.model.midas.conv_blocks = (1, 1, 1, 1)
    with pytest.raises(ValueError, match="conv_widths needs 5 entries"):
        validate_model_config(config.model)
    config.model.midas.conv_widths = (8, 8, 16, 16, 32)
    validate_model_config(config.model)
