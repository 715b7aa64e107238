"""MiDaS DPT pieces against worked values: BEiT relative position index, attention bias,
the non-overlapping transposed conv, fusion, and the head's output conventions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax.models.layers import ConvTransposeNonOverlap
from avs_jax.models.midas import Attention, MiDaS, relative_position_index
from avs_jax.train.state import init_compiler_options


def test_relative_position_index_hand_case():
    # 1×2 grid: tokens (0,0), (0,1); table (2*1-1)*(2*2-1)+3 = 6 entries.
    idx = relative_position_index((1, 2))
    # pair (q, k): (dy + 0) * 3 + (dx + 1); dx = xq - xk.
    expected = np.array([[5, 3, 3], [4, 1, 0], [4, 2, 1]])
    np.testing.assert_array_equal(idx, expected)


def test_relative_position_index_depends_only_on_offset():
    gh, gw = 3, 4
    idx = relative_position_index((gh, gw))[1:, 1:]
    pos = [(y, x) for y in range(gh) for x in range(gw)]
    seen = {}
    for i, (yq, xq) in enumerate(pos):
        for j, (yk, xk) in enumerate(pos):
            seen.setdefault((yq - yk, xq - xk), set()).add(int(idx[i, j]))
    assert all(len(v) == 1 for v in seen.values())
    assert len({next(iter(v)) for v in seen.values()}) == (2 * gh - 1) * (2 * gw - 1)


def test_attention_relative_bias_is_added_to_logits():
    # Zero q/k projections make the logits the bias alone: a huge bias on the (cls, cls) entry
    # makes the cls query attend only to itself, so its output is proj(v_cls).
    grid = (2, 2)
    x = jax.random.normal(jax.random.key(0), (1, 5, 8))
    attn = Attention(num_heads=2, grid=grid)
    params = attn.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(np.asarray, params)
    qkv = np.array(params["qkv"]["kernel"])
    qkv[:, :16] = 0.0  # q and k
    table = np.zeros_like(params["relative_position_bias_table"])
    table[-1] = 100.0  # cls -> cls
    params = {**params, "qkv": {"kernel": qkv}, "relative_position_bias_table": table}
    out = np.asarray(attn.apply({"params": params}, x))
    v = np.asarray(x)[0, 0] @ qkv[:, 16:] + np.asarray(params["v_bias"])
    expected = v @ params["proj"]["kernel"] + params["proj"]["bias"]
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-4, atol=1e-5)
    # The other queries see a zero bias to the patch tokens and a zero one to cls: uniform.
    mean_v = (np.asarray(x)[0] @ qkv[:, 16:] + np.asarray(params["v_bias"])).mean(0)
    np.testing.assert_allclose(
        out[0, 1], mean_v @ params["proj"]["kernel"] + params["proj"]["bias"], rtol=1e-4, atol=1e-5
    )


def test_attention_rejects_other_grid():
    attn = Attention(num_heads=1, grid=(2, 2))
    with pytest.raises(ValueError, match="grid"):
        attn.init(jax.random.key(0), jnp.zeros((1, 7, 4)))


def test_conv_transpose_non_overlap_matches_numpy():
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 4)).astype(np.float32)
    layer = ConvTransposeNonOverlap(5, 2)
    variables = jax.tree.map(lambda v: v + 0.3, layer.init(jax.random.key(0), x))
    y = np.asarray(layer.apply(variables, x))
    k = np.asarray(variables["params"]["kernel"])
    ref = np.zeros((1, 4, 6, 5), np.float32)
    for i in range(2):
        for j in range(3):
            for p in range(2):
                for q in range(2):
                    ref[0, 2 * i + p, 2 * j + q] = x[0, i, j] @ k[p, q]
    np.testing.assert_allclose(y, ref + 0.3, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("patch_size", [16, 8])
def test_tiny_midas_outputs_and_conventions(patch_size):
    # Patch 8 (not in MiDaS) has a 4x4 x finer token grid; its reassemble factors are halved so
    # that the maps, and all that reads them, stay at 1/4 .. 1/32 of the image.
    model = MiDaS(
        image_size=(32, 64),
        embed_dim=16,
        depth=2,
        num_heads=2,
        patch_size=patch_size,
        hooks=(0, 1, 0, 1),
        reassemble_features=(4, 8, 8, 8),
        features=8,
        head_features=4,
    )
    image = jax.random.uniform(jax.random.key(0), (1, 32, 64, 3))
    init = jax.jit(model.init, compiler_options=init_compiler_options())
    variables = init(jax.random.key(1), image)
    out = jax.jit(model.apply)(variables, image)
    assert {k: v.shape[1:3] for k, v in out.items()} == {
        "l4_rn": (1, 2),
        "r4": (2, 4),
        "r3": (4, 8),
        "r2": (8, 16),
        "r1": (16, 32),
        "out_conv": (32, 64),
        "rel_depth": (32, 64),
    }
    # out_conv is a ReLU output and rel_depth a ReLU'd 1×1 conv of it.
    oc, rel = np.asarray(out["out_conv"]), np.asarray(out["rel_depth"])
    assert oc.min() >= 0 and rel.min() >= 0
    head = variables["params"]["head_conv3"]
    expected = np.maximum(oc @ np.asarray(head["kernel"])[0, 0] + np.asarray(head["bias"]), 0)
    np.testing.assert_allclose(rel, expected, rtol=1e-4, atol=1e-5)
    enc = variables["params"]["encoder"]
    gh, gw = 32 // patch_size, 64 // patch_size
    assert "relative_position_bias_table" in enc["blocks_0"]["attn"]
    assert enc["blocks_0"]["attn"]["relative_position_bias_table"].shape == (
        (2 * gh - 1) * (2 * gw - 1) + 3,
        2,
    )
    # Resampling of the four hooks: transposed convs up by 4 and 2, none, a conv down by 2
    # (patch 16); up by 2, none, down by 2 and by 4 with a 4x4 stride-4 kernel (patch 8).
    kernels = [enc[f"act_postprocess{j}"].get("resample", {}).get("kernel") for j in range(1, 5)]
    shapes = [None if k is None else k.shape[:2] for k in kernels]
    assert shapes == (
        [(4, 4), (2, 2), None, (3, 3)] if patch_size == 16 else [(2, 2), None, (3, 3), (4, 4)]
    )


def test_conv_encoder_feeds_the_decoder_its_stages_and_is_batch_independent_at_eval():
    # MidasNet's layout: the ResNet's stages at 1/4 .. 1/32 (not its 1/2 stem) are the four maps
    # that layer1_rn .. layer4_rn read, so each conv's input width is that stage's width.
    widths = (4, 6, 8, 10, 12)
    model = MiDaS(
        image_size=(32, 64),
        embed_dim=16,
        depth=2,
        num_heads=2,
        patch_size=16,
        hooks=(0, 1, 0, 1),
        reassemble_features=widths[1:],
        features=8,
        head_features=4,
        conv_widths=widths,
        conv_blocks=(1, 1, 1, 1),
    )
    images = jax.random.uniform(jax.random.key(0), (3, 32, 64, 3))
    # Each pass jitted, the initialisation as training compiles it: ~13 s on 2 cores, against
    # ~70 s op by op (each op compiles anew for each input shape).
    init = jax.jit(
        lambda key, x: model.init(key, x, False), compiler_options=init_compiler_options()
    )
    variables = init(jax.random.key(1), images)
    evaluate = jax.jit(lambda v, x: model.apply(v, x, False))
    params = variables["params"]
    assert [params[f"layer{i}_rn"]["kernel"].shape[2] for i in range(1, 5)] == list(widths[1:])
    assert "blocks_0" not in params["encoder"] and "bn1" in variables["batch_stats"]["encoder"]
    out = evaluate(variables, images)
    assert out["l4_rn"].shape[1:3] == (1, 2) and out["rel_depth"].shape[1:3] == (32, 64)
    # At evaluation BatchNorm uses its running statistics: one image's map does not depend on
    # the others in its batch. (With the batch's statistics it would; that is train mode.)
    # Tolerance: float32 rounding through ~20 convs, relative to the map's largest values (the
    # ReLU'd head cancels to small values where the map is near 0), and another batch size may
    # pick another convolution algorithm.
    alone = evaluate(variables, images[:1])["rel_depth"]
    scale = float(np.abs(out["rel_depth"][0]).max())
    np.testing.assert_allclose(alone[0], out["rel_depth"][0], atol=1e-5 * scale)
    train = jax.jit(lambda v, x: model.apply(v, x, True, mutable=["batch_stats"]))
    trained, updates = train(variables, images)
    moved = updates["batch_stats"]["encoder"]["bn1"]["mean"]
    assert not np.allclose(moved, variables["batch_stats"]["encoder"]["bn1"]["mean"])
    assert np.abs(trained["rel_depth"][0] - alone[0]).max() > 1e-2 * scale
