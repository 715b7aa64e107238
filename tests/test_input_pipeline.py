"""Tests of the grain input pipelines: depth handling, resizes, augmentation, eval, resume."""

import io

import batvision_fixture as fx  # tests/ is on sys.path (pytest rootdir-less prepend)
import grain
import numpy as np
import PIL.Image
import pytest

from avs_jax.data import audio, transforms
from avs_jax.data import input_pipeline as ip
from avs_jax.data.config import default_data_config
from avs_jax.errors import BadInputError
from tfds_batvision import onset
from tfds_batvision.build import build_dataset

SMALL = (16, 32)


def _cfg(name, **kw):
    c = default_data_config(name)
    c.image_size = SMALL
    c.num_workers = 0
    c.num_threads = 2
    c.prefetch_buffer_size = 2
    c.batch_size = 2
    for k, v in kw.items():
        setattr(c, k, v)
    return c


@pytest.fixture(scope="module")
def bv2_builder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bv2")
    root = fx.write_bv2(d / "root", {"L": {"train": 5, "test": 3}}, hw=(24, 32), frames=1000)
    return build_dataset("bv2", root, d / "data")


@pytest.fixture(scope="module")
def triples_builder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bv1t")
    root = fx.write_bv1(
        d / "root",
        {"s": [10 + 0.1 * i for i in range(41)]},
        hw=(12, 20),
        samples=256,
        poses=True,
        intrinsics={"fx": 10.0, "fy": 11.0, "cx": 9.5, "cy": 5.5, "width": 20, "height": 12},
    )
    return build_dataset("bv1_triples", root, d / "data")


def test_cap_depth_hand_values():
    d = np.array([0, 1.5, 30.0, 29.999, np.nan, np.inf, -1.0, 45.0], np.float32)
    np.testing.assert_array_equal(
        transforms.cap_depth(d, 30.0), np.array([0, 1.5, 0, 29.999, 0, 0, 0, 0], np.float32)
    )


def test_resize_nearest_keeps_only_original_values():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 29, (24, 40)).astype(np.float32)
    d[rng.random(d.shape) < 0.3] = 0
    for size in [(7, 13), (16, 32), (48, 80)]:
        r = transforms.resize_nearest(d, size)
        assert np.isin(r, d).all()
    # At its own size (data stored at the training size) every pixel is its own source.
    np.testing.assert_array_equal(transforms.resize_nearest(d, d.shape), d)
    np.testing.assert_array_equal(
        transforms.resize_nearest(np.array([[1.0, 2.0], [3.0, 0.0]]), (4, 4)),
        np.kron(np.array([[1.0, 2.0], [3.0, 0.0]]), np.ones((2, 2))),
    )


def test_decode_image_native_size_equals_pil(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (24, 32, 3), np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(img).save(buf, format="JPEG")
    got, native = transforms.decode_image(buf.getvalue(), (24, 32))
    assert native == (24, 32)
    ref = np.asarray(PIL.Image.open(io.BytesIO(buf.getvalue())).convert("RGB")) / 255.0
    np.testing.assert_allclose(got, ref, atol=1e-6)


def _decoded_example(left_gain=1.0, right_gain=0.0):
    rng = np.random.default_rng(2)
    wav = rng.standard_normal(2000).astype(np.float32)
    a = np.stack([left_gain * wav, right_gain * wav])
    return {
        "image": rng.random((16, 32, 3)).astype(np.float32),
        "depth": rng.uniform(0, 10, (16, 32)).astype(np.float32),
        "echo": audio.echo_features(a, SMALL, 30.0),
    }


def test_flip_swaps_ears_and_mirrors_image_and_depth():
    ex = _decoded_example(left_gain=1.0, right_gain=0.0)
    assert ex["echo"][..., 0].max() > 0 and ex["echo"][..., 1].max() == 0
    aug = dict(default_data_config("bv2").aug.to_dict(), flip_p=1.0, rotation_deg=0.0, color_p=0.0)
    out = transforms.ZoeDepthAugment(aug).random_map(ex, np.random.default_rng(0))
    np.testing.assert_array_equal(out["echo"][..., 1], ex["echo"][..., 0])
    np.testing.assert_array_equal(out["echo"][..., 0], ex["echo"][..., 1])
    np.testing.assert_array_equal(out["image"], ex["image"][:, ::-1])
    np.testing.assert_array_equal(out["depth"], ex["depth"][:, ::-1])
    same = transforms.ZoeDepthAugment(dict(aug, flip_p=0.0)).random_map(
        ex, np.random.default_rng(0)
    )
    for k in ex:
        np.testing.assert_array_equal(same[k], ex[k])


def test_rotation_keeps_depth_values_and_colour_bounds():
    ex = _decoded_example()
    aug = dict(default_data_config("bv2").aug.to_dict(), flip_p=0.0, color_p=1.0)
    out = transforms.ZoeDepthAugment(aug).random_map(ex, np.random.default_rng(3))
    assert np.isin(out["depth"], np.append(ex["depth"], 0)).all()  # nearest: no blended depths
    assert out["image"].min() >= 0 and out["image"].max() <= 1


def test_train_batches_values(bv2_builder):
    """Host path (device_prep off): decoded, STFT'd and resized here."""
    cfg = _cfg("bv2", augment=False, shuffle=False, device_prep=False)
    it = ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1)
    b = next(it)
    src = bv2_builder.as_data_source("train")
    for i in range(2):
        ex = src[i]
        np.testing.assert_array_equal(
            b["depth"][i], transforms.resize_nearest(transforms.cap_depth(ex["depth"], 30.0), SMALL)
        )
        aligned = onset.align_to_onset(ex["audio"], ex["audio_onset"], onset.CANONICAL_ONSET)
        np.testing.assert_allclose(
            b["echo"][i], audio.echo_features(aligned, SMALL, 30.0), rtol=1e-5, atol=1e-6
        )
    assert set(b) == {"image", "echo", "depth"}
    assert b["image"].shape == (2, 16, 32, 3) and 0 <= b["image"].min() <= b["image"].max() <= 1


def test_device_prep_train_batches_are_raw(bv2_builder):
    """Default stage-1 training batches: uint8 image, the aligned waveform cut to 30 m, depth; no
    host augmentation (tests/test_device_prep.py checks what the step makes of them)."""
    cfg = _cfg("bv2", shuffle=False)
    b = next(ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1))
    assert set(b) == {"image", "wave", "depth"}
    assert b["image"].dtype == np.uint8 and b["image"].shape == (2, 16, 32, 3)
    src = bv2_builder.as_data_source("train")
    for i in range(2):
        ex = src[i]
        image, _ = transforms.decode_image(ex["image"], SMALL)
        np.testing.assert_array_equal(b["image"][i] * np.float32(1 / 255), image)
        aligned = onset.align_to_onset(ex["audio"], ex["audio_onset"], onset.CANONICAL_ONSET)
        np.testing.assert_array_equal(b["wave"][i], audio.cut_or_pad(aligned, 7782))
        np.testing.assert_array_equal(
            b["depth"][i], transforms.resize_nearest(transforms.cap_depth(ex["depth"], 30.0), SMALL)
        )


def test_echo_moves_to_the_canonical_onset_and_off_is_the_raw_cut(bv2_builder):
    ex = bv2_builder.as_data_source("train")[0]
    assert ex["audio_onset"] == onset.detect_onset(ex["audio"])
    assert ex["audio_onset"] < 200  # the fixture's chirp: 87+ samples before BV2's 287
    stft = _cfg("bv2").stft.to_dict()
    assert (stft["align"], stft["onset"]) == ("onset", 287)  # on by default, BV2's onset
    on = transforms.DecodeSample(SMALL, 30.0, stft).map(ex)["echo"]
    off = transforms.DecodeSample(SMALL, 30.0, dict(stft, align="off")).map(ex)["echo"]
    # Aligned: the chirp preceded by 287 - onset zeros, so the cut ends that much earlier.
    lead = np.zeros((2, 287 - int(ex["audio_onset"])), np.float32)
    shifted = np.concatenate([lead, ex["audio"]], axis=1)
    np.testing.assert_allclose(on, audio.echo_features(shifted, SMALL, 30.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(off, audio.echo_features(ex["audio"], SMALL, 30.0), rtol=1e-5)
    assert not np.allclose(on, off, atol=1e-3)
    without = {k: v for k, v in ex.items() if k != "audio_onset"}
    with pytest.raises(BadInputError, match="has no audio_onset.*align='off'"):
        transforms.DecodeSample(SMALL, 30.0, stft).map(without)
    transforms.DecodeSample(SMALL, 30.0, dict(stft, align="off")).map(without)  # not needed


def test_resume_is_exact_with_state_and_orbax(bv2_builder, tmp_path):
    import orbax.checkpoint as ocp

    cfg = _cfg("bv2")
    it = ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1)
    for _ in range(3):  # crosses an epoch boundary (5 examples, batch 2)
        next(it)
    state = it.get_state()
    mngr = ocp.CheckpointManager(tmp_path / "ckpt")
    mngr.save(3, args=ocp.args.Composite(data=ip.checkpoint_args(it)))
    mngr.wait_until_finished()
    want = [next(it) for _ in range(3)]
    fresh = ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1)
    fresh.set_state(state)
    fresh2 = ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1)
    mngr.restore(3, args=ocp.args.Composite(data=ip.checkpoint_args(fresh2, restore=True)))
    for w in want:
        for got in (next(fresh), next(fresh2)):
            for k in w:
                np.testing.assert_array_equal(got[k], w[k])


def test_eval_iterator_pads_and_keeps_everything(bv2_builder):
    cfg = _cfg("bv2")
    batches = list(
        ip.create_eval_iterator(bv2_builder, cfg, "test", process_index=0, process_count=1)
    )
    assert [b["valid_example"].tolist() for b in batches] == [[True, True], [True, False]]
    ids = [s for b in batches for s, v in zip(b["sample_id"], b["valid_example"]) if v]
    assert sorted(ids) == ["L/5", "L/6", "L/7"]
    src = bv2_builder.as_data_source("test")
    by_id = {src[i]["sample_id"].decode(): src[i] for i in range(len(src))}
    np.testing.assert_array_equal(
        batches[0]["depth_full"][1],
        transforms.cap_depth(by_id[batches[0]["sample_id"][1]]["depth"], 30.0),
    )
    assert batches[0]["depth_full"].shape == (2, 24, 32)
    assert np.all(batches[1]["depth_full"][1] == 0) and batches[1]["sample_id"][1] == ""


def test_eval_shares_of_two_hosts_have_the_same_number_of_batches(bv2_builder):
    """3 test examples over 2 hosts, 1 per host batch: host 0 reads 2, host 1 reads 1 and adds an
    all-padding batch, since every validation step runs on all hosts together (a host with a batch
    fewer would leave the other waiting)."""
    cfg = _cfg("bv2")
    hosts = [
        list(ip.create_eval_iterator(bv2_builder, cfg, "test", process_index=i, process_count=2))
        for i in range(2)
    ]
    assert [[b["valid_example"].tolist() for b in h] for h in hosts] == [
        [[True], [True]],
        [[True], [False]],
    ]
    ids = [s for h in hosts for b in h for s, v in zip(b["sample_id"], b["valid_example"]) if v]
    assert sorted(ids) == ["L/5", "L/6", "L/7"]
    pad = hosts[1][1]
    assert set(pad) == set(hosts[0][0]) and pad["sample_id"][0] == "" and not pad["depth"].any()
    with pytest.raises(BadInputError, match="3 examples, fewer than the 4 hosts"):
        ip.make_eval_dataset(
            bv2_builder, cfg, "test", batch_size=1, process_index=0, process_count=4
        )


class _RecordDraw(grain.transforms.RandomMap):
    """An 'augmentation' that writes its first random draw into the image."""

    def __init__(self, aug):
        del aug

    def random_map(self, ex, rng):
        return {**ex, "image": np.full_like(ex["image"], rng.random())}


def test_hosts_draw_their_own_augmentation(bv2_builder, monkeypatch):
    """Host-side augmentation after the split of the examples over hosts: the two hosts' rows
    used to get the same random draws (the same flip, rotation and colour in rows i and i + B/2
    of every global batch); one host keeps the draws of before."""
    monkeypatch.setattr(ip, "ZoeDepthAugment", _RecordDraw)
    cfg = _cfg("bv2", shuffle=False, device_prep=False, batch_size=4)

    def draws(pi, pc):
        b = next(ip.create_train_iterator(bv2_builder, cfg, process_index=pi, process_count=pc))
        return b["image"][:, 0, 0, 0].tolist()

    host0, host1 = draws(0, 2), draws(1, 2)
    assert len(host0) == 2 and not set(host0) & set(host1)
    # One host: element i's draw is what grain's random_map gives seed config.seed + 1.
    single = draws(0, 1)
    ds = grain.MapDataset.range(4).random_map(lambda i, rng: rng.random(), seed=cfg.seed + 1)
    np.testing.assert_allclose(single, [ds[i] for i in range(4)], rtol=1e-6)


def test_triples_flip_jitter_intrinsics(triples_builder):
    src = triples_builder.as_data_source("train")
    (ex,) = [src[i] for i in range(len(src))]
    dec = transforms.DecodeTriple((6, 10)).map(ex)
    # K from intrinsics.json (at 12x20) scaled by 1/2 with pixel centres at integers.
    np.testing.assert_allclose(dec["intrinsics"], [[5, 0, 4.5], [0, 5.5, 2.5], [0, 0, 1]])
    aug = dict(
        default_data_config("bv1_triples").aug.to_dict(),
        flip_p=1.0,
        jitter_p=1.0,
        jitter_contrast=(1, 1),
        jitter_saturation=(1, 1),
        jitter_hue=0.0,
        jitter_brightness=(1.1, 1.1),
    )
    out = transforms.MonodepthAugment(aug).random_map(dec, np.random.default_rng(0))
    np.testing.assert_array_equal(out["frames"], dec["frames"][:, :, ::-1])  # un-jittered
    np.testing.assert_allclose(
        out["frames_aug"], np.clip(dec["frames"][:, :, ::-1] * 1.1, 0, 1), atol=1e-5
    )  # same jitter for the 3 frames
    assert out["intrinsics"][0, 2] == pytest.approx(10 - 1 - 4.5)
    # Mirrored world: x translations change sign.
    np.testing.assert_allclose(out["poses"][:, 0, 3], -dec["poses"][:, 0, 3])


def test_color_jitter_identity_and_hue_round_trip():
    x = np.random.default_rng(4).random((2, 5, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(transforms.color_jitter(x, 1, 1, 1, 0, [0, 1, 2, 3]), x, atol=1e-5)
    once = transforms.color_jitter(x, 1, 1, 1, 0.25, [3])
    back = transforms.color_jitter(once, 1, 1, 1, -0.25, [3])
    np.testing.assert_allclose(back, x, atol=1e-5)
    gray = transforms.color_jitter(x, 1, 1, 0.0, 0, [2])  # saturation 0 -> grey, equal channels
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)


def test_hue_shift_hand_cases():
    """Hue turns worked by hand: red -> yellow (1/6) -> green (1/3) -> blue (2/3); half a turn maps
    each channel x to max + min - x; a grey pixel has no hue and stays."""

    def hue(rgb, turns):
        return transforms.color_jitter(np.array([[rgb]], np.float32), 1, 1, 1, turns, [3])[0, 0]

    np.testing.assert_allclose(hue([1, 0, 0], 1 / 6), [1, 1, 0], atol=1e-6)
    np.testing.assert_allclose(hue([1, 0, 0], 1 / 3), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(hue([1, 0, 0], -1 / 3), [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(hue([0.8, 0.4, 0.2], 0.5), [0.2, 0.6, 0.8], atol=1e-6)
    # (0.8, 0.4, 0.2): h = (0.4 - 0.2) / 0.6 / 6 = 1/18 turn; +1/18 more puts g at v - c * (1 - 2/3).
    np.testing.assert_allclose(hue([0.8, 0.4, 0.2], 1 / 18), [0.8, 0.6, 0.2], atol=1e-6)
    np.testing.assert_allclose(hue([0.3, 0.3, 0.3], 0.37), [0.3, 0.3, 0.3], atol=1e-7)


def test_triples_train_batch_keys(triples_builder):
    cfg = _cfg("bv1_triples", batch_size=1, augment=False)  # the host would flip frames too
    cfg.device_prep = False  # made on the host: float frames and their colour-jittered copy
    b = next(ip.create_train_iterator(triples_builder, cfg, process_index=0, process_count=1))
    assert set(b) == {"frames", "frames_aug", "intrinsics", "poses", "has_pose"}
    assert b["frames"].shape == (1, 3, 16, 32, 3) and bool(b["has_pose"][0])
    # The default, raw: the step jitters and flips (avs_jax/data/device_triples.py).
    cfg.device_prep = True
    raw = next(ip.create_train_iterator(triples_builder, cfg, process_index=0, process_count=1))
    assert set(raw) == {"frames", "intrinsics", "poses", "has_pose"}
    assert raw["frames"].dtype == np.uint8
    np.testing.assert_array_equal(raw["frames"] * np.float32(1 / 255), b["frames"])


def test_worker_processes_give_same_batches(bv2_builder):
    cfg = _cfg("bv2")
    it0 = ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1)
    ref = [next(it0) for _ in range(2)]
    cfg.num_workers = 2
    it2 = ip.create_train_iterator(bv2_builder, cfg, process_index=0, process_count=1)
    for r in ref:
        got = next(it2)
        assert set(got) == set(r)
        for k in r:
            np.testing.assert_array_equal(got[k], r[k])
    it2.close() if hasattr(it2, "close") else None


def _count_decodes(monkeypatch, cls):
    calls = []
    original = cls.map

    def counting(self, ex):
        calls.append(1)
        return original(self, ex)

    monkeypatch.setattr(cls, "map", counting)
    return calls


def test_cache_decoded_gives_the_same_batches_and_decodes_each_example_once(
    bv2_builder, monkeypatch
):
    # 5 examples, batch 2: 6 batches cross two epoch boundaries; shuffled and augmented.
    plain = ip.create_train_iterator(
        bv2_builder, _cfg("bv2", num_threads=1), process_index=0, process_count=1
    )
    want = [next(plain) for _ in range(6)]
    calls = _count_decodes(monkeypatch, transforms.DecodeSample)
    cached = ip.create_train_iterator(
        bv2_builder,
        _cfg("bv2", num_threads=1, cache_decoded=True),
        process_index=0,
        process_count=1,
    )
    got = [next(cached) for _ in range(6)]
    for w, g in zip(want, got):
        for k in w:
            np.testing.assert_array_equal(g[k], w[k])
    assert len(calls) == 5


def test_cached_eval_dataset_decodes_once_over_repeated_passes(bv2_builder, monkeypatch):
    calls = _count_decodes(monkeypatch, transforms.DecodeSample)
    ds = ip.make_eval_dataset(
        bv2_builder,
        _cfg("bv2", num_threads=1, cache_decoded=True),
        "test",
        process_index=0,
        process_count=1,
    )
    first, second = list(ds), list(ds)
    assert len(calls) == 3  # the 3 test examples, once
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["depth_full"], b["depth_full"])
        assert list(a["sample_id"]) == list(b["sample_id"])


def test_cached_elements_are_kept_read_only():
    ds = transforms.CachedMapDataset(
        grain.MapDataset.source([{"x": np.zeros(3)}]).map(lambda e: dict(e))
    )
    element = ds[0]
    assert ds[0] is element and ds[1] is element  # index + epoch * len: the same example
    with pytest.raises(ValueError, match="read-only"):
        element["x"][0] = 1.0  # an in-place write would have changed every later epoch
    assert len(ds) == 1 and len(ds[0:1]) == 1
