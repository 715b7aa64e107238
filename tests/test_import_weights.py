"""Weight import: parity with upstream PyTorch outputs (fixtures), strict key accounting, layouts.

Fixtures are written by tools/make_parity_fixtures.py (needs torch); these tests need no torch.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avs_jax import import_weights as iw
from avs_jax.import_weights.midas import cli_midas_dpt
from avs_jax.models.resnet import ResNet18

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_fixture(name: str) -> tuple[dict, np.ndarray, dict]:
    """(state dict, input, outputs) of one fixture file."""
    path = FIXTURES / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"{path} missing; run tools/make_parity_fixtures.py")
    with np.load(path) as f:
        sd = {k[3:]: f[k] for k in f.files if k.startswith("sd/")}
        outs = {k[4:]: f[k] for k in f.files if k.startswith("out/")}
        x = f["input"]
    return sd, x, outs


def assert_close_to_scale(got, want, tol: float = 1e-4, what: str = "") -> None:
    """max |got - want| <= tol * max |want| (the issue's parity criterion)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(np.abs(want).max(), 1e-12)
    err = np.abs(got - want).max()
    assert err <= tol * scale, f"{what}: max abs diff {err:.3g} vs output scale {scale:.3g}"


def small_resnet(in_channels: int = 3) -> tuple[ResNet18, dict]:
    model = ResNet18(widths=(8, 8, 16, 32, 64))
    template = iw.model_template(model, jnp.zeros((1, 32, 32, in_channels)), train=False)
    return model, template


# ----------------------------------------------------------------------------------- parity


def test_resnet18_matches_torchvision():
    sd, x, outs = load_fixture("resnet18")
    model, template = small_resnet()
    variables, skipped = iw.import_resnet18(sd, template)
    # The classifier is reported as intentionally skipped, with BN's step counters.
    assert {"fc.weight", "fc.bias", "bn1.num_batches_tracked"} <= set(skipped)
    assert all(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in skipped)
    feats = jax.jit(model.apply, static_argnames="train")(variables, jnp.asarray(x), train=False)
    for i, f in enumerate(feats):
        assert_close_to_scale(f, outs[f"feature{i}"], what=f"feature{i}")


# ------------------------------------------------------------------------- strict accounting


def test_missing_extra_and_misshaped_keys_are_named():
    sd, _, _ = load_fixture("resnet18")
    _, template = small_resnet()

    missing = dict(sd)
    del missing["layer2.1.bn2.running_var"]
    with pytest.raises(iw.WeightImportError, match=r"missing keys: layer2\.1\.bn2\.running_var"):
        iw.import_resnet18(missing, template)

    extra = dict(sd, **{"layer5.0.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(iw.WeightImportError, match=r"unexpected keys: layer5\.0\.conv1\.weight"):
        iw.import_resnet18(extra, template)

    wrong = dict(sd)
    wrong["layer3.0.downsample.0.weight"] = np.zeros((32, 8, 1, 1), np.float32)
    with pytest.raises(
        iw.WeightImportError,
        match=r"wrong shapes: layer3\.0\.downsample\.0\.weight: \(32, 8, 1, 1\)",
    ):
        iw.import_resnet18(wrong, template)


def test_unmapped_flax_leaf_is_named():
    _, template = small_resnet()
    rules = iw.RESNET18_RULES[:2]  # only the stem
    with pytest.raises(iw.WeightImportError, match=r"no rule maps: .*params/layer1_0/conv1/kernel"):
        iw.map_state_dict({}, template, rules)


# ------------------------------------------------------------------------------- layouts


def test_conv_kernel_matches_direct_correlation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)  # OIHW, kh=3, kw=2
    x = rng.normal(size=(1, 5, 6, 3)).astype(np.float32)  # NHWC
    y = jax.lax.conv_general_dilated(
        x, iw.conv_kernel(w), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    # PyTorch Conv2d: out[o, i, j] = sum_c,a,b x[c, i + a, j + b] w[o, c, a, b].
    ref = np.zeros((1, 3, 5, 4))
    for i in range(3):
        for j in range(5):
            ref[0, i, j] = np.einsum("abc,ocab->o", x[0, i : i + 3, j : j + 2], w)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def torch_conv_transpose_reference(x, w, b, stride, padding, output_padding):
    """PyTorch ConvTranspose2d by definition (scatter-add), NHWC in/out, w [I, O, kh, kw]."""
    n, h, wd, _ = x.shape
    _, o, kh, kw = w.shape
    full = np.zeros(
        (n, (h - 1) * stride + kh + output_padding, (wd - 1) * stride + kw + output_padding, o)
    )
    for i in range(h):
        for j in range(wd):
            full[:, i * stride : i * stride + kh, j * stride : j * stride + kw] += np.einsum(
                "nc,coab->nabo", x[:, i, j], w
            )
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (wd - 1) * stride - 2 * padding + kw + output_padding
    return full[:, padding : padding + ho, padding : padding + wo] + b


@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize(
    "k,stride,padding,output_padding", [(4, 4, 0, 0), (2, 2, 0, 0), (3, 2, 1, 1)]
)
def test_conv_transpose_matches_pytorch_definition(
    transpose_kernel, k, stride, padding, output_padding
):
    import flax.linen as nn

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    w = rng.normal(size=(5, 6, k, k)).astype(np.float32)  # PyTorch [I, O, kh, kw]
    b = rng.normal(size=(6,)).astype(np.float32)
    lo, hi = k - 1 - padding, k - 1 - padding + output_padding
    layer = nn.ConvTranspose(
        6, (k, k), (stride, stride), padding=((lo, hi), (lo, hi)), transpose_kernel=transpose_kernel
    )
    params = {"params": {"kernel": iw.conv_transpose_kernel(w, transpose_kernel), "bias": b}}
    y = layer.apply(params, x)
    ref = torch_conv_transpose_reference(x, w, b, stride, padding, output_padding)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_linear_and_qkv():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(9, 3)).astype(np.float32)  # qkv Linear of a 3-dim embedding
    x = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(x @ iw.linear_kernel(w), x @ w.T, rtol=1e-6)
    q, k, v = iw.split_qkv(iw.linear_kernel(w), axis=1)
    np.testing.assert_array_equal(np.concatenate([x @ q, x @ k, x @ v], 1), x @ w.T)
    np.testing.assert_array_equal(
        iw.qkv_bias(np.ones(3), 2 * np.ones(3)), [1, 1, 1, 0, 0, 0, 2, 2, 2]
    )


def test_pose_stem_is_duplicated_and_halved():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(8, 3, 7, 7)).astype(np.float32)
    w6 = iw.adapt_input_channels(w, 6)
    np.testing.assert_array_equal(w6, np.concatenate([w, w], 1) / 2)
    img = rng.normal(size=(1, 16, 16, 3)).astype(np.float32)
    conv = lambda x, k: jax.lax.conv_general_dilated(  # noqa: E731
        x, iw.conv_kernel(k), (2, 2), ((3, 3), (3, 3)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(
        conv(np.concatenate([img, img], -1), w6), conv(img, w), rtol=1e-5, atol=1e-5
    )
    # The 2-channel echo stem: an input equal on both channels responds like that grey image.
    w2 = iw.adapt_input_channels(w, 2)
    grey = rng.normal(size=(1, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(
        conv(np.repeat(grey, 2, -1), w2), conv(np.repeat(grey, 3, -1), w), rtol=1e-5, atol=1e-5
    )


def test_rel_pos_table_interpolation():
    heads = 2
    # Same grid: unchanged.
    table = np.random.default_rng(4).normal(size=(7 * 7 + 3, heads)).astype(np.float32)
    np.testing.assert_array_equal(iw.interpolate_rel_pos_table(table, (4, 4), (4, 4)), table)
    # A table linear in the offsets stays linear (bilinear resize, half-pixel centres), and the
    # three cls entries are kept.
    dy, dx = np.meshgrid(np.arange(7.0), np.arange(7.0), indexing="ij")
    lin = np.stack([dy, dx], -1).reshape(49, 2)
    lin = np.concatenate([lin, [[7, 7], [8, 8], [9, 9]]]).astype(np.float32)
    out = iw.interpolate_rel_pos_table(lin, (4, 4), (2, 6))
    assert out.shape == (3 * 11 + 3, 2)
    np.testing.assert_array_equal(out[-3:], lin[-3:])
    grid = out[:-3].reshape(3, 11, 2)
    # Interior sample positions follow (i + 0.5) * in/out - 0.5.
    np.testing.assert_allclose(grid[1, :, 0], (1.5 * 7 / 3 - 0.5) * np.ones(11), rtol=1e-6)
    np.testing.assert_allclose(grid[0, 5, 1], 5.5 * 7 / 11 - 0.5, rtol=1e-6)


# --------------------------------------------------------------------------------- readers


def test_safetensors_round_trip_and_handcrafted_header(tmp_path):
    tensors = {
        "a.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "b": np.array([1, -2], np.int64),
        "c": np.float16([0.5, 1.5]),
    }
    path = tmp_path / "w.safetensors"
    iw.write_safetensors(path, tensors)
    back = iw.read_safetensors(path)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k], v)
    # A file written by hand from the format description, with bfloat16 and metadata.
    header = (
        b'{"__metadata__":{"format":"pt"},"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}'
    )
    bf16 = np.float32([1.0, -2.5]).view(np.uint32) >> 16
    blob = len(header).to_bytes(8, "little") + header + bf16.astype("<u2").tobytes()
    (tmp_path / "h.safetensors").write_bytes(blob)
    np.testing.assert_array_equal(iw.read_state_dict(tmp_path / "h.safetensors")["x"], [1.0, -2.5])


def test_readers_name_the_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 4)
    with pytest.raises(iw.WeightImportError, match="bad.safetensors"):
        iw.read_state_dict(bad)
    with pytest.raises(iw.WeightImportError, match="unknown weight format"):
        (tmp_path / "w.h5").write_bytes(b"")
        iw.read_state_dict(tmp_path / "w.h5")
    # Files that are not what their suffix says: a message naming them, not a traceback.
    (tmp_path / "bad.npz").write_bytes(b"\x00" * 5)
    with pytest.raises(iw.WeightImportError, match=r"bad\.npz: not a readable \.npz file"):
        iw.read_state_dict(tmp_path / "bad.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(iw.WeightImportError, match=r"one\.npz: a single array"):
        iw.read_state_dict(tmp_path / "one.npz")
    header = b'[{"dtype": "F32"}]'
    (tmp_path / "list.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(iw.WeightImportError, match=r"list\.safetensors: header is not a JSON obj"):
        iw.read_state_dict(tmp_path / "list.safetensors")
    header = b'{"w": {"dtype": "F32"}}'
    (tmp_path / "part.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(iw.WeightImportError, match=r"tensor 'w' lacks dtype, shape or data_off"):
        iw.read_state_dict(tmp_path / "part.safetensors")


def test_a_data_parallel_state_dict_loses_its_module_prefix(tmp_path):
    """torch's DataParallel saves every key under "module.": read as the model's own keys; a
    file where only some keys have it is left as it is (the mapping then names them)."""
    np.savez(
        tmp_path / "dp.npz", **{"module.conv1.weight": np.ones(2), "module.fc.bias": np.ones(1)}
    )
    assert sorted(iw.read_state_dict(tmp_path / "dp.npz")) == ["conv1.weight", "fc.bias"]
    np.savez(tmp_path / "mixed.npz", **{"module.conv1.weight": np.ones(2), "fc.bias": np.ones(1)})
    assert sorted(iw.read_state_dict(tmp_path / "mixed.npz")) == ["fc.bias", "module.conv1.weight"]


# ----------------------------------------------------------------------- checkpoint + CLI


def test_cli_checkpoint_load_and_merge(tmp_path):
    sd, _, _ = load_fixture("resnet18")
    _, template = small_resnet()
    variables, _ = iw.import_resnet18(sd, template)
    iw.save_pretrained(tmp_path / "ckpt", variables, {"source": "resnet18"})
    loaded = iw.read_imported(tmp_path / "ckpt")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)

    # Merge into a bigger model's variables at a prefix: values land there, the rest is kept.
    fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
    outer = {
        "params": {"encoder": fresh["params"], "head": {"w": np.ones(3)}},
        "batch_stats": {"encoder": fresh["batch_stats"]},
    }
    merged = iw.merge_pretrained(outer, loaded, "encoder")
    np.testing.assert_array_equal(merged["params"]["head"]["w"], np.ones(3))
    inner = {"params": merged["params"]["encoder"], "batch_stats": merged["batch_stats"]["encoder"]}
    for a, b in zip(jax.tree.leaves(inner), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)
    # The caller's variables are not modified.
    assert not np.array_equal(
        outer["params"]["encoder"]["conv1"]["kernel"],
        merged["params"]["encoder"]["conv1"]["kernel"],
    )

    # Shape mismatches at merge time are named.
    small = {"params": {"encoder": jax.tree.map(lambda a: a, fresh["params"])}}
    small["params"]["encoder"]["conv1"] = {"kernel": np.zeros((7, 7, 6, 8), np.float32)}
    with pytest.raises(iw.WeightImportError, match=r"conv1/kernel: pretrained \(7, 7, 3, 8\)"):
        iw.merge_pretrained(small, {"params": loaded["params"]}, "encoder")


def test_command_line(tmp_path, capsys):
    sd, _, _ = load_fixture("resnet18")
    np.savez(tmp_path / "resnet.npz", **sd)
    # The full-width ResNet-18 does not fit the small fixture: exit status 1, the key is named.
    assert (
        iw.main(
            ["--source=resnet18", f"--in={tmp_path / 'resnet.npz'}", f"--out={tmp_path / 'bad'}"]
        )
        == 1
    )
    assert "conv1.weight: (8, 3, 7, 7) converts to (7, 7, 3, 8)" in capsys.readouterr().err
    assert (
        iw.main(
            [
                "--source=resnet18",
                f"--in={tmp_path / 'resnet.npz'}",
                "--in_channels=6",
                "--widths=8,8,16,32,64",
                f"--out={tmp_path / 'ok'}",
            ]
        )
        == 0
    )
    loaded = iw.read_imported(tmp_path / "ok")
    np.testing.assert_allclose(
        loaded["params"]["conv1"]["kernel"],
        iw.conv_kernel(np.concatenate([sd["conv1.weight"]] * 2, 1) / 2),
    )


def test_monodepth2_depth_matches_upstream():
    DepthNet = pytest.importorskip("avs_jax.models.depthnet").DepthNet

    sd, x, outs = load_fixture("monodepth2_depth")
    # The fixture's widths: ResNet-18 and Monodepth2's decoder with every channel count / 8.
    model = DepthNet(encoder_widths=(8, 8, 16, 32, 64), decoder_channels=(2, 4, 8, 16, 32))
    template = iw.model_template(model, jnp.zeros((1, 64, 96, 3)), train=False)
    enc = {k: v for k, v in sd.items() if not k.startswith("decoder.")}
    dec = {k: v for k, v in sd.items() if k.startswith("decoder.")}
    variables, skipped = iw.import_monodepth2_depth(enc, dec, template)
    assert {"height", "width", "use_stereo", "encoder.fc.weight"} <= set(skipped)
    disps = jax.jit(model.apply, static_argnames="train")(variables, jnp.asarray(x), train=False)
    for s, d in enumerate(disps):
        # Not saturated, so the comparison means something.
        assert 0.01 < outs[f"disp{s}"].std() and 0.05 < outs[f"disp{s}"].mean() < 0.95
        assert_close_to_scale(d, outs[f"disp{s}"], what=f"disp{s}")


def test_monodepth2_pose_matches_upstream():
    PoseNet = pytest.importorskip("avs_jax.models.posenet").PoseNet

    sd, x, outs = load_fixture("monodepth2_pose")
    model = PoseNet(encoder_widths=(8, 8, 16, 32, 64), hidden=32, num_frames=2)
    template = iw.model_template(model, jnp.zeros((1, 64, 96, 6)), train=False)
    enc = {k: v for k, v in sd.items() if k.startswith("encoder.")}
    net = {k: v for k, v in sd.items() if k.startswith("net.")}
    variables, _ = iw.import_monodepth2_pose(enc, net, template)
    # One compiled call; the decoder's own output (both frames) comes out as an intermediate.
    apply = jax.jit(
        lambda v, p: model.apply(
            v,
            p,
            train=False,
            capture_intermediates=lambda m, _: m.name == "decoder",
            mutable=["intermediates"],
        )
    )
    (axisangle, translation), state = apply(variables, jnp.asarray(x))
    # PoseNet returns the first frame's motion, as Monodepth2 uses it.
    assert_close_to_scale(axisangle, outs["axisangle"][:, 0], what="axisangle")
    assert_close_to_scale(translation, outs["translation"][:, 0], what="translation")
    aa, tr = state["intermediates"]["decoder"]["__call__"][0]
    assert_close_to_scale(aa, outs["axisangle"], what="axisangle, both frames")
    assert_close_to_scale(tr, outs["translation"], what="translation, both frames")


def midas_fixture_model():
    midas = pytest.importorskip("avs_jax.models.midas")
    sd, x, outs = load_fixture("midas_dpt")
    # The fixture's BEiT (tools/make_parity_fixtures.py): hooks 0-3 of 5 blocks, embed 64,
    # 4 heads, reassemble 16/32/64/64, features 16, head 2; table for 64×64, run at 64×96.
    model = midas.MiDaS(
        image_size=(64, 96),
        embed_dim=64,
        depth=5,
        num_heads=4,
        patch_size=16,
        hooks=(0, 1, 2, 3),
        reassemble_features=(16, 32, 64, 64),
        features=16,
        head_features=2,
    )
    return model, sd, x, outs


def test_midas_dpt_matches_upstream():
    model, sd, x, outs = midas_fixture_model()
    template = iw.model_template(model, jnp.zeros((1, 64, 96, 3)))
    # Released MiDaS checkpoints also hold the (persistent, then) index buffers: skipped.
    sd = dict(
        sd,
        **{"pretrained.model.blocks.0.attn.relative_position_index": np.zeros((17, 17), np.int64)},
    )
    variables, skipped = iw.import_midas_dpt(sd, template, grid=(4, 6))
    assert any(k.startswith("pretrained.model.blocks.4.") for k in skipped)  # after last hook
    assert "pretrained.model.head.weight" in skipped
    got = jax.jit(model.apply)(variables, jnp.asarray(x))
    assert float(outs["rel_depth"].std()) > 0.1  # not a dead ReLU
    for name, want in outs.items():
        assert_close_to_scale(got[name], want, what=name)


def test_zoedepth_matches_upstream():
    avsnet = pytest.importorskip("avs_jax.models.avsnet")
    sd, x, outs = load_fixture("zoedepth")
    c = avsnet.default_model_config("tiny")
    c.variant = "rgb"
    c.max_depth = 10.0
    # The fixture's tiny MiDaS (as in midas_dpt, but ZoeDepth's fixed 32-channel out_conv).
    c.midas.update(
        image_size=(64, 96),
        embed_dim=64,
        depth=5,
        num_heads=4,
        hooks=(0, 1, 2, 3),
        reassemble_features=(16, 32, 64, 64),
        features=16,
        head_features=32,
    )
    # ZoeDepth's attractors call `inv_attractor(dx)` without passing alpha/gamma, so the
    # released code attracts with the function defaults alpha = 300, gamma = 2 whatever
    # config_zoedepth.json says (attractor_alpha = 1000 is stored but unused): the attraction
    # the importer writes into its model config.
    assert (iw.ZOEDEPTH_ATTRACTOR_ALPHA, iw.ZOEDEPTH_ATTRACTOR_GAMMA) == (300.0, 2)
    c.bins.update(
        n_bins=16,
        bin_embedding_dim=16,
        seed_mlp_dim=256,
        mlp_dim=128,
        attractor_alpha=iw.ZOEDEPTH_ATTRACTOR_ALPHA,
        attractor_gamma=iw.ZOEDEPTH_ATTRACTOR_GAMMA,
    )
    model = avsnet.AVSNet(c)
    template = iw.model_template(model, jnp.zeros((1, 64, 96, 3)), None, train=False)
    variables, skipped = iw.import_zoedepth(sd, template, grid=(4, 6))
    assert "conditional_log_binomial.log_binomial_transform.k_idx" in skipped
    got = jax.jit(lambda v, im: model.apply(v, im, None, train=False))(variables, jnp.asarray(x))
    for name in ("rel_depth", "bin_centers", "probs", "metric_depth"):
        assert_close_to_scale(got[name], outs[name], what=name)
    # The fixture tells the two apart: config_zoedepth.json's alpha 1000 misses upstream by ~2%.
    c1000 = c.copy_and_resolve_references()
    c1000.bins.attractor_alpha = 1000.0
    off = avsnet.AVSNet(c1000).apply(variables, jnp.asarray(x), None, train=False)
    with pytest.raises(AssertionError, match="metric_depth"):
        assert_close_to_scale(off["metric_depth"], outs["metric_depth"], what="metric_depth")
    # The imported pieces merge into an AVS-Net (with echoes) by name.
    c.variant = "rgb_echoes"
    full = iw.model_template(
        avsnet.AVSNet(c), jnp.zeros((1, 64, 96, 3)), jnp.zeros((1, 64, 96, 2)), train=False
    )
    merged = full
    for name in ("midas", "conv2", "metric_bins"):
        merged = iw.merge_pretrained(merged, iw.subtree(variables, name), name)
    np.testing.assert_array_equal(
        merged["params"]["conv2"]["kernel"], variables["params"]["conv2"]["kernel"]
    )


def with_12_blocks(sd: dict, block0: str) -> dict:
    """The fixture's 5-block BEiT as 12 copies of its block 0 (`block0`: that block's key prefix),
    a depth the configuration reader knows (BEiT-B: hooks 2, 5, 8, 11)."""
    out = {k: v for k, v in sd.items() if ".blocks." not in k}
    for i in range(12):
        for k, v in sd.items():
            if k.startswith(block0):
                out[k.replace(".blocks.0.", f".blocks.{i}.")] = v
    return out


def test_command_line_midas_and_zoedepth(tmp_path):
    pytest.importorskip("avs_jax.models.avsnet")
    # The fixtures' BEiTs have 5 blocks: the configuration reader only knows MiDaS's depths.
    sd, _, _ = load_fixture("midas_dpt")
    iw.write_safetensors(tmp_path / "midas.safetensors", sd)
    with pytest.raises(iw.WeightImportError, match="MiDaS BEiT with 5 blocks"):
        cli_midas_dpt([tmp_path / "midas.safetensors"], type("Args", (), {"image_size": "64,96"}))
    # With 12 blocks (a BEiT-B layout: hooks 2, 5, 8, 11) the whole path runs.
    sd12 = with_12_blocks(sd, "pretrained.model.blocks.0.")
    iw.write_safetensors(tmp_path / "midas12.safetensors", sd12)
    assert (
        iw.main(
            [
                "--source=midas_dpt",
                f"--in={tmp_path / 'midas12.safetensors'}",
                "--image_size=64,64",
                f"--out={tmp_path / 'm'}",
            ]
        )
        == 0
    )
    loaded = iw.read_imported(tmp_path / "m")
    assert sorted(k for k in loaded["params"]["encoder"] if k.startswith("blocks_")) == sorted(
        f"blocks_{i}" for i in range(12)
    )
    np.testing.assert_array_equal(
        loaded["params"]["encoder"]["blocks_11"]["attn"]["relative_position_bias_table"],
        sd["pretrained.model.blocks.0.attn.relative_position_bias_table"],
    )  # same 4×4 grid

    zsd, _, _ = load_fixture("zoedepth")
    z12 = with_12_blocks(zsd, "core.core.pretrained.model.blocks.0.")
    np.savez(tmp_path / "zoe.npz", **{f"model.{k}": v for k, v in z12.items()})
    assert (
        iw.main(
            [
                "--source=zoedepth",
                f"--in={tmp_path / 'zoe.npz'}",
                "--image_size=64,96",
                f"--out={tmp_path / 'z'}",
            ]
        )
        == 0
    )
    loaded = iw.read_imported(tmp_path / "z")
    np.testing.assert_array_equal(
        loaded["params"]["metric_bins"]["attractors_1"]["conv2"]["kernel"],
        iw.conv_kernel(zsd["attractors.1._net.2.weight"]),
    )
    # import.json records the model config that reproduces upstream: the attraction the released
    # code ran (alpha 300, gamma 2), not config_zoedepth.json's unused alpha 1000.
    bins = json.loads((tmp_path / "z" / "import.json").read_text())["model_config"]["bins"]
    assert (bins["attractor_alpha"], bins["attractor_gamma"]) == (300.0, 2)
    assert bins["n_attractors"] == [16, 8, 4, 1] and bins["n_bins"] == 16
    # The 4×4 table of the file, resized to the 4×6 grid of 64×96.
    assert loaded["params"]["midas"]["encoder"]["blocks_3"]["attn"][
        "relative_position_bias_table"
    ].shape == (7 * 11 + 3, 4)


def test_zoedepth_config_keeps_upstream_attraction_whatever_the_default(monkeypatch):
    """The imported config's alpha/gamma are ZoeDepth's (300, 2), not AVS-Net's default."""
    avsnet = pytest.importorskip("avs_jax.models.avsnet")
    default = avsnet.default_model_config

    def other_default(size):
        c = default(size)
        c.bins.update(attractor_alpha=1000.0, attractor_gamma=3)
        return c

    monkeypatch.setattr(avsnet, "default_model_config", other_default)
    sd, _, _ = load_fixture("zoedepth")
    sd = with_12_blocks(sd, "core.core.pretrained.model.blocks.0.")
    c = iw.zoedepth_config_from_state_dict(sd, (64, 96))
    assert (c.bins.attractor_alpha, c.bins.attractor_gamma) == (300.0, 2)


def test_pth_without_torch_says_what_to_do(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    (tmp_path / "w.pth").write_bytes(b"not read")
    with pytest.raises(iw.WeightImportError, match=r"w\.pth: .*needs PyTorch.*\.safetensors"):
        iw.read_state_dict(tmp_path / "w.pth")


def test_imagenet_resnet_starts_the_pose_encoder():
    """The paper's start: ImageNet ResNet-18 weights into PoseNet's 6-channel encoder."""
    PoseNet = pytest.importorskip("avs_jax.models.posenet").PoseNet
    sd, _, _ = load_fixture("resnet18")
    pose = iw.model_template(
        PoseNet(encoder_widths=(8, 8, 16, 32, 64), hidden=32),
        jnp.zeros((1, 64, 64, 6)),
        train=False,
    )
    encoder = {c: pose[c]["encoder"] for c in ("params", "batch_stats")}
    imported, _ = iw.import_resnet18(sd, encoder)
    merged = iw.merge_pretrained(pose, imported, "encoder")
    np.testing.assert_array_equal(
        merged["params"]["encoder"]["conv1"]["kernel"],
        iw.conv_kernel(np.concatenate([sd["conv1.weight"]] * 2, 1) / 2),
    )
    np.testing.assert_array_equal(
        merged["batch_stats"]["encoder"]["layer4_1"]["bn2"]["var"], sd["layer4.1.bn2.running_var"]
    )


def test_init_from_puts_an_imported_resnet_into_the_echo_encoder(tmp_path):
    """config.init_from reads import_weights' checkpoints; strict about what it replaces."""
    from avs_jax.models.avsnet import AVSNet, default_model_config
    from avs_jax.models.resnet import ResNet18
    from avs_jax.train.pretrained import load_pretrained

    cfg = default_model_config("tiny")
    shapes = jax.eval_shape(
        lambda: AVSNet(cfg).init(
            jax.random.key(0), jnp.zeros((1, 64, 128, 3)), jnp.zeros((1, 64, 128, 2)), train=False
        )
    )
    rs = np.random.RandomState(0)
    variables = {
        c: jax.tree.map(lambda x: rs.randn(*x.shape).astype(np.float32), shapes[c])
        for c in ("params", "batch_stats")
    }
    resnet = jax.eval_shape(
        lambda: ResNet18(tuple(cfg.echo.widths), tuple(cfg.echo.blocks)).init(
            jax.random.key(1), jnp.zeros((1, 64, 128, 2)), train=False
        )
    )
    pretrained = {
        c: jax.tree.map(lambda x: np.full(x.shape, 0.5, np.float32), resnet[c])
        for c in ("params", "batch_stats")
    }
    iw.save_pretrained(tmp_path / "echo", pretrained)
    loaded = load_pretrained(str(tmp_path / "echo"), variables, "echo_encoder")
    for leaf in jax.tree.leaves(loaded["params"]["echo_encoder"]):
        np.testing.assert_array_equal(leaf, 0.5)
    np.testing.assert_array_equal(
        loaded["params"]["conv2"]["kernel"], variables["params"]["conv2"]["kernel"]
    )
    # A ResNet of another width does not fit: the error names the parameter.
    wide = jax.eval_shape(
        lambda: ResNet18((16, 8, 16, 16, 32), tuple(cfg.echo.blocks)).init(
            jax.random.key(1), jnp.zeros((1, 64, 128, 2)), train=False
        )
    )
    iw.save_pretrained(
        tmp_path / "wide",
        {
            c: jax.tree.map(lambda x: np.zeros(x.shape, np.float32), wide[c])
            for c in ("params", "batch_stats")
        },
    )
    with pytest.raises(iw.WeightImportError, match="conv1"):
        load_pretrained(str(tmp_path / "wide"), variables, "echo_encoder")
