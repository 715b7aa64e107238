"""`python -m avs_jax.predict` and `avs_jax.MetricScaler` (issue 35): metric depth of the real BV2
recording and of simulated ones at each input image's size, preprocessing identical to
training's, `--relative` scaled as `avs_jax.scaling.apply_scaling` scales, the same numbers from
the API and the command, and one line naming the file for every bad input.

The run is a randomly initialised tiny AVS-Net checkpoint written as training writes one (its
values do not matter here, its layout does): initialising it through Flax costs 20-60 s on 2
busy cores, `eval_shape` and numpy ~5 s. All the model calls share one batch size (2), so the
forward compiles once (~10 s).
"""

import csv
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import batvision_fixture as fx
import jax
import numpy as np
import PIL.Image
import pytest
import soundfile as sf

import avs_jax
from avs_jax import predict
from avs_jax.config_files import load_config
from avs_jax.data.transforms import DecodeSample
from avs_jax.errors import BadInputError
from avs_jax.evaluation import external
from avs_jax.metric_scaler import MetricScaler
from avs_jax.scaling import apply_scaling
from avs_jax.user_inputs import BadSampleError
from tfds_batvision.onset import CANONICAL_ONSET, detect_onset
from tfds_batvision.sim import acoustics
from tfds_batvision.validate import read_bv2_wav

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = fx.REAL_BV2_ROOT / "unknown_location"
SAMPLE_JPEG = SAMPLE / "camera" / "camera_47.jpeg"
SAMPLE_WAV = SAMPLE / "audio" / "audio_47.wav"
BATCH = 2


@functools.lru_cache(maxsize=1)
def _random_state():
    """(train state, config) of a tiny AVS-Net (64x128) with random weights."""
    import optax
    from flax import traverse_util

    from avs_jax.evaluation.checkpoints import dummy_batch
    from avs_jax.train.avsnet_task import AVSNetTask
    from avs_jax.train.state import create_train_state, data_mesh

    config = load_config("avsnet", "tiny")
    config.checkpoint.async_save = False
    abstract = jax.eval_shape(
        AVSNetTask(config).init_variables, jax.random.key(0), dummy_batch(config)
    )
    rng = np.random.default_rng(0)

    def value(path, x):
        if path[-1] in ("scale", "var"):
            return np.ones(x.shape, x.dtype)
        if path[-1] in ("bias", "mean"):
            return np.zeros(x.shape, x.dtype)
        fan_in = max(1, int(np.prod(x.shape[:-1])))
        return (rng.standard_normal(x.shape) / np.sqrt(fan_in)).astype(x.dtype)

    flat = traverse_util.flatten_dict(abstract)
    variables = traverse_util.unflatten_dict({k: value(k, v) for k, v in flat.items()})
    return create_train_state(variables, optax.adam(1e-3), jax.random.key(1), data_mesh()), config


def _save_run(workdir: Path, task_name: str = "avsnet") -> Path:
    """A step-0 checkpoint of `_random_state`, laid out as training saves one, its config's
    task set to `task_name`."""
    from avs_jax.train.checkpointing import Checkpointer

    state, config = _random_state()
    meta = json.loads(config.to_json_best_effort())
    meta["task"] = task_name
    ckpt = Checkpointer(str(workdir / "checkpoints"), config.checkpoint)
    ckpt.save(0, state, meta=dict(config=meta))
    ckpt.close()
    return workdir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return str(_save_run(tmp_path_factory.mktemp("avsnet_run")))


@pytest.fixture(scope="module")
def scaler(run_dir):
    return MetricScaler.load(run_dir, batch_size=BATCH)


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    """The real BV2 frame and recording as files a user may have, by stem: native (the JPEG and
    the int32 WAV themselves), small (a 360x640 JPEG, the recording as a float32 [2, T] .npy),
    lossless (a 300x400 PNG, a float WAV), full (a 720x1280 PNG, a 16-bit WAV)."""
    d = tmp_path_factory.mktemp("real")
    images, echoes = d / "images", d / "echoes"
    images.mkdir()
    echoes.mkdir()
    shutil.copy(SAMPLE_JPEG, images / "native.jpeg")
    with PIL.Image.open(SAMPLE_JPEG) as im:
        im.resize((640, 360), PIL.Image.BILINEAR).save(images / "small.jpg", quality=95)
        im.resize((400, 300), PIL.Image.BILINEAR).save(images / "lossless.png")
        im.save(images / "full.png")
    shutil.copy(SAMPLE_WAV, echoes / "native.wav")
    wave = read_bv2_wav(SAMPLE_WAV)  # float32 [2, T], int32 / 2**31
    np.save(echoes / "small.npy", wave)
    sf.write(echoes / "lossless.wav", wave.T, 44100, subtype="FLOAT")
    sf.write(echoes / "full.wav", wave.T, 44100, subtype="PCM_16")
    return d


def _run_cli(*args) -> int:
    return predict.main([str(a) for a in args])


def _error_line(*args) -> str:
    with pytest.raises(SystemExit) as e:
        _run_cli(*args)
    line = str(e.value.code)
    assert "\n" not in line and line.startswith("avs_jax: "), line
    return line


def test_command_predicts_the_real_recording_at_each_image_size_as_the_api(
    run_dir, scaler, real_files, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["--run", run_dir, "--images", real_files / "images", "--echoes"]
    assert _run_cli(*args, real_files / "echoes", "--out", out, "--batch_size", BATCH) == 0
    assert "wrote 4 metric depth map(s)" in capsys.readouterr().out
    sizes = {
        "native": (720, 1280),
        "small": (360, 640),
        "lossless": (300, 400),
        "full": (720, 1280),
    }
    echo_of = {"native": "native.wav", "small": "small.npy", "lossless": "lossless.wav"}
    echo_of["full"] = "full.wav"
    rows = {r["sample"]: r for r in csv.DictReader(open(out / "scales.csv"))}
    assert set(rows) == set(sizes)
    depths = {}
    for stem, size in sizes.items():
        depth = depths[stem] = np.load(out / f"{stem}.npy")
        assert depth.shape == size and depth.dtype == np.float32
        assert np.isfinite(depth).all() and (depth > 0).all()
        with PIL.Image.open(out / f"{stem}.png") as png:
            assert png.format == "PNG"
        assert rows[stem]["scale_factor"] == rows[stem]["shift"] == ""  # nothing was scaled
        assert float(rows[stem]["median_mp"]) == pytest.approx(np.median(depth), rel=1e-6)
        image = next((real_files / "images").glob(stem + ".*"))
        # The API, loaded on its own with the command's batch size: the same numbers.
        api = scaler(image, real_files / "echoes" / echo_of[stem])
        np.testing.assert_array_equal(api, depth)
    # The .npy and the float WAV hold the int32 WAV's floats exactly: same model input.
    img = SAMPLE_JPEG
    native = scaler.prepare(img, real_files / "echoes" / "native.wav").echo
    for name in ("small.npy", "lossless.wav"):
        np.testing.assert_array_equal(
            scaler.prepare(img, real_files / "echoes" / name).echo, native
        )
    # 16-bit PCM (full.wav) is the same recording, quantised: the same depth within 1 mm.
    pcm16 = scaler(img, real_files / "echoes" / "full.wav")
    np.testing.assert_allclose(pcm16, depths["native"], atol=1e-3)


def test_inputs_are_prepared_as_the_training_pipeline_prepares_them(run_dir, scaler):
    """Image and echo input equal the input pipeline's (DecodeSample) for the same files, with
    the evaluation's echo settings (the training cut, the chirp onset moved to 287)."""
    from avs_jax.evaluation.evaluate import _stage1_predictor

    assert scaler.stft == _stage1_predictor("rgb_echoes", run_dir)[0].stft
    assert scaler.stft["align"] == "onset" and scaler.stft["onset"] == CANONICAL_ONSET
    wave = read_bv2_wav(SAMPLE_WAV)
    example = {
        "image": SAMPLE_JPEG.read_bytes(),
        "audio": wave,
        "audio_onset": detect_onset(wave),
        "depth": np.ones((720, 1280), np.float32),
    }
    want = DecodeSample(scaler.image_size, scaler.max_depth, scaler.stft).map(example)
    sample = scaler.prepare(str(SAMPLE_JPEG), str(SAMPLE_WAV))
    np.testing.assert_array_equal(sample.image, want["image"])
    np.testing.assert_array_equal(sample.echo, want["echo"])
    assert sample.size == (720, 1280)
    # A uint8 array of a PNG's pixels is that PNG: a float [0, 1] array of the same pixels too.
    pixels = np.random.default_rng(0).integers(0, 256, (50, 70, 3), np.uint8)
    a = scaler.prepare(pixels, wave).image
    np.testing.assert_array_equal(a, scaler.prepare(pixels / 255.0, wave).image)
    assert a.shape == scaler.image_size + (3,)


def _wall(distance: float, seed: int) -> np.ndarray:
    """A simulated [2, 20000] recording of one wall, the chirp at BV2's onset, light noise."""
    return acoustics.single_reflector_echo(
        distance,
        num_samples=20000,
        chirp_start=CANONICAL_ONSET - acoustics.DIRECT_PATH_SAMPLES,
        noise_std=1e-4,
        rng=np.random.default_rng(seed),
    )


def test_simulated_recordings_and_relative_maps_scaled_as_apply_scaling(scaler):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (96, 160, 3), np.uint8), rng.random((96, 160, 3))]
    echoes = [_wall(2.0, 0), _wall(6.0, 1)]
    mps = scaler.predict_batch(images, echoes)
    assert [m.shape for m in mps] == [(96, 160)] * 2
    rels = [rng.uniform(0.2, 2.0, (48, 80)), rng.uniform(0.2, 2.0, (96, 160))]
    scale = jax.jit(apply_scaling, static_argnames=("method", "kind"))
    for kind, method in (("disparity", "median"), ("depth", "mean_std")):
        got = scaler.predict_batch(images, echoes, rels, kind=kind, method=method)
        for image, echo, rel, mp, g in zip(images, echoes, rels, mps, got):
            # M_p by hand (the API at the image size), R at the image size as the evaluation
            # resizes external maps; the mask: where both are finite and > 0, here everywhere.
            r = external.resize_host(rel.astype(np.float32), mp.shape)[None]
            mask = np.ones_like(r, bool)
            want = np.asarray(scale(r, method, mask, mp[None], kind=kind))[0]
            assert g.shape == image.shape[:2]
            np.testing.assert_allclose(g, want, rtol=1e-6)
            np.testing.assert_array_equal(scaler.scale(rel, image, echo, kind, method), g)


def test_command_scales_relative_maps_as_the_api(run_dir, scaler, real_files, tmp_path):
    rel_dir = tmp_path / "relative"
    rel_dir.mkdir()
    rng = np.random.default_rng(2)
    for stem in ("native", "small"):
        np.save(rel_dir / f"{stem}.npy", rng.uniform(1.0, 5.0, (45, 80)).astype(np.float32))
    images = tmp_path / "images"
    images.mkdir()
    for stem, name in (("native", "native.jpeg"), ("small", "small.jpg")):
        shutil.copy(real_files / "images" / name, images / name)
    out = tmp_path / "out"
    args = ["--run", run_dir, "--images", images, "--echoes", real_files / "echoes"]
    args += ["--relative", rel_dir, "--kind", "depth", "--out", out, "--batch_size", BATCH]
    with pytest.raises(SystemExit, match="full.wav: no image full"):
        _run_cli(*args)  # the folder of echoes holds two recordings without an image here
    assert _run_cli(*args, "--skip_bad") == 0
    rows = {r["sample"]: r for r in csv.DictReader(open(out / "scales.csv"))}
    for stem, name, echo in (
        ("native", "native.jpeg", "native.wav"),
        ("small", "small.jpg", "small.npy"),
    ):
        depth = np.load(out / f"{stem}.npy")
        rel = np.load(rel_dir / f"{stem}.npy")
        api = scaler.scale(rel, images / name, real_files / "echoes" / echo, kind="depth")
        np.testing.assert_array_equal(depth, api)
        # The factor in scales.csv is the one applied: median(M_p) / median(R) (eq. 3).
        r = external.resize_host(rel, depth.shape)
        factor = float(rows[stem]["scale_factor"])
        np.testing.assert_allclose(depth, factor * r, rtol=1e-6)
        assert float(rows[stem]["shift"]) == 0.0
        mp = scaler(images / name, real_files / "echoes" / echo)
        assert factor == pytest.approx(np.median(mp) / np.median(r), rel=1e-5)


def _jpeg(path: Path, size=(64, 128)) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, size + (3,), np.uint8)
    PIL.Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.fixture
def cli_on_loaded_run(scaler, monkeypatch):
    """The command on the module's loaded run (each real load re-reads the checkpoint)."""
    monkeypatch.setattr(predict.MetricScaler, "load", lambda run, **kwargs: scaler)


def test_each_bad_input_is_one_line_naming_the_file(tmp_path, cli_on_loaded_run):
    def case(name, image_names, echo_files, relative=None):
        d = tmp_path / name
        (d / "i").mkdir(parents=True)
        (d / "e").mkdir()
        for n in image_names:
            _jpeg(d / "i" / n)
        for n, write in echo_files.items():
            write(d / "e" / n)
        args = ["--run", "run", "--images", d / "i", "--echoes", d / "e", "--out", d / "o"]
        if relative is not None:
            (d / "r").mkdir()
            np.save(d / "r" / "a.npy", relative)
            args += ["--relative", d / "r", "--kind", "depth"]
        return d, _error_line(*args, "--batch_size", BATCH)

    wave = _wall(3.0, 0)
    good = lambda p: sf.write(p, wave.T, 44100, subtype="PCM_32")  # noqa: E731
    d, line = case("unpaired_image", ["a.jpg", "b.jpg"], {"a.wav": good})
    assert line.endswith(f"{d / 'i' / 'b.jpg'}: no echo b.wav or b.npy in {d / 'e'}")
    d, line = case("unpaired_echo", ["a.jpg"], {"a.wav": good, "c.npy": lambda p: np.save(p, wave)})
    assert f"{d / 'e' / 'c.npy'}: no image c.jpg/.jpeg/.png in" in line
    d, line = case("two_images_one_stem", ["a.jpg", "a.png"], {"a.wav": good})
    assert f"{d / 'i' / 'a.png'}: same stem as {d / 'i' / 'a.jpg'}" in line
    rate = lambda p: sf.write(p, wave.T, 48000, subtype="PCM_32")  # noqa: E731
    d, line = case("rate", ["a.jpg"], {"a.wav": rate})
    assert line.endswith(
        f"{d / 'e' / 'a.wav'}: sample rate 48000 Hz, expected 44100 (the run's; resample it)"
    )
    mono = lambda p: sf.write(p, wave[0], 44100, subtype="PCM_32")  # noqa: E731
    d, line = case("mono", ["a.jpg"], {"a.wav": mono})
    assert line.endswith(f"{d / 'e' / 'a.wav'}: 1 channel(s), expected 2 [left, right]")
    d, line = case("garbage", ["a.jpg"], {"a.wav": lambda p: p.write_bytes(b"RIFF1234WAVEjunk")})
    assert f"BadSampleError: {d / 'e' / 'a.wav'}: truncated WAV: no data chunk" in line

    def cut(p):  # a 16-bit WAV cut to a third: libsndfile alone reads it as a short recording
        sf.write(p, wave.T, 44100, subtype="PCM_16")
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])

    d, line = case("truncated_16_bit", ["a.jpg"], {"a.wav": cut})
    assert re.search(
        rf"{re.escape(str(d / 'e' / 'a.wav'))}: truncated WAV: data chunk declares \d+ bytes but "
        r"only \d+ are present",
        line,
    )
    # A steady tone: its binaural envelope is flat, no chirp stands out of it.
    t = 2 * np.pi * 1000 / 44100 * np.arange(20000)
    tone = lambda p: np.save(p, 0.01 * np.stack([np.sin(t), np.cos(t)]))  # noqa: E731
    d, line = case("no_chirp", ["a.jpg"], {"a.npy": tone})
    assert re.search(
        rf"{re.escape(str(d / 'e' / 'a.npy'))}: no chirp stands out of the noise: .*"
        "the echo cannot be placed in time$",
        line,
    )
    d, line = case("time_major", ["a.jpg"], {"a.npy": lambda p: np.save(p, wave.T)})
    assert line.endswith(
        f"{d / 'e' / 'a.npy'}: shape (20000, 2), expected [2, T]: [left, right] channels first "
        "(this looks like [T, 2]: transpose it)"
    )
    d, line = case("counts", ["a.jpg"], {"a.npy": lambda p: np.save(p, wave * 2.0**31)})
    assert f"{d / 'e' / 'a.npy'}: samples reach" in line
    d = tmp_path / "corrupt_image"
    d.mkdir()
    (d / "a.jpg").write_bytes(_jpeg(tmp_path / "x.jpg").read_bytes()[:300])
    good(d / "a.wav")
    line = _error_line(
        "--run", "run", "--images", d / "a.jpg", "--echoes", d / "a.wav", "--out", d / "o"
    )
    assert f"{d / 'a.jpg'}: truncated or corrupt image" in line
    d, line = case("relative_shape", ["a.jpg"], {"a.wav": good}, np.ones((3, 4, 5)))
    assert line.endswith(
        f"{d / 'r' / 'a.npy'}: expected a 2-D depth/disparity map [h, w], got shape (3, 4, 5)"
    )
    bad = np.ones((4, 5))
    bad[0, 0], bad[1, 1] = np.nan, 0.0
    d, line = case("relative_values", ["a.jpg"], {"a.wav": good}, bad)
    assert f"PredictionError: {d / 'r' / 'a.npy'}: 1 NaN, 1 <= 0 of its 20 values" in line
    # Outputs into the folder of .npy echoes: a.npy would be replaced by a depth map.
    d = tmp_path / "time_major"
    line = _error_line("--run", "r", "--images", d / "i", "--echoes", d / "e", "--out", d / "e")
    assert line.endswith(
        f"--out={d / 'e'}: the output {d / 'e' / 'a.npy'} would overwrite that input; write the "
        "outputs to another folder"
    )


def test_skip_bad_lists_and_skips_the_bad_samples(tmp_path, cli_on_loaded_run, capsys):
    images, echoes, out = tmp_path / "i", tmp_path / "e", tmp_path / "o"
    images.mkdir()
    echoes.mkdir()
    for stem in ("a", "b", "silent", "lonely"):
        _jpeg(images / f"{stem}.jpg")
    np.save(echoes / "a.npy", _wall(2.0, 0))
    sf.write(echoes / "b.wav", _wall(4.0, 1).T, 44100, subtype="PCM_16")
    np.save(echoes / "silent.npy", np.zeros((2, 20000)))
    args = ["--run", "run", "--images", images, "--echoes", echoes, "--out", out]
    assert _run_cli(*args, "--batch_size", BATCH, "--skip_bad") == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "a.npy",
        "a.png",
        "b.npy",
        "b.png",
        "scales.csv",
    ]
    assert "skipped 2 bad sample(s) (--skip_bad):" in printed
    assert f"  {images / 'lonely.jpg'}: no echo lonely.wav or lonely.npy in {echoes}" in printed
    assert f"  {echoes / 'silent.npy'}: no chirp stands out of the noise" in printed
    rows = list(csv.DictReader(open(out / "scales.csv")))
    assert [r["sample"] for r in rows] == ["a", "b"]


def test_a_run_that_is_not_stage_1_is_named(tmp_path, scaler):
    image, echo = _jpeg(tmp_path / "a.jpg"), tmp_path / "a.npy"
    np.save(echo, _wall(3.0, 0))
    common = ["--images", image, "--echoes", echo, "--out", tmp_path / "o"]
    line = _error_line("--run", tmp_path / "nothing", *common)
    assert line.endswith(f"{tmp_path / 'nothing'}: no such folder (expected a stage-1 run)")
    line = _error_line("--run", tmp_path, *common)
    assert line.endswith(f"{tmp_path}: no checkpoints/ folder: is this a training workdir?")
    relative_run = _save_run(tmp_path / "relative_run", task_name="relative")
    line = _error_line("--run", relative_run, *common)
    assert "a 'relative' checkpoint given where a 'avsnet' model is expected" in line
    with pytest.raises(BadSampleError, match=r"^echo array: shape \(20000, 2\), expected"):
        scaler.prepare(str(image), _wall(3.0, 0).T)


def test_only_rgb_reads_no_echo_and_pairs_single_files_by_position(tmp_path):
    for stem in ("a", "b"):
        _jpeg(tmp_path / f"{stem}.jpg")
    pairs, problems = predict.find_pairs(str(tmp_path), None, None, needs_echo=False)
    assert [(p.stem, p.echo) for p in pairs] == [("a", None), ("b", None)] and not problems
    np.save(tmp_path / "room.npy", np.zeros((2, 8)))
    pairs, _ = predict.find_pairs(str(tmp_path / "a.jpg"), str(tmp_path / "room.npy"), None, True)
    assert pairs == [predict.Pair("a", str(tmp_path / "a.jpg"), str(tmp_path / "room.npy"))]


def test_import_avs_jax_stays_cheap_and_exports_metric_scaler():
    heavy = ("jax", "flax", "avs_jax.metric_scaler")
    code = f"import sys, avs_jax; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr
    assert avs_jax.MetricScaler is MetricScaler
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        avs_jax.Nope  # noqa: B018


def test_another_camera_scales_mp_by_its_focal_length_over_trainings(
    tmp_path, scaler, capsys, monkeypatch
):
    """--intrinsics: M_p × the camera's focal length / training's (the run's camera.json)."""
    monkeypatch.chdir(tmp_path)  # the run's data_dir, data/tfds, is then surely not there
    run = _save_run(tmp_path / "run")
    wave = _wall(3.0, 0)
    image = _jpeg(tmp_path / "a.jpg")
    # A camera with fx / W = fy / H = 0.65 against training's 0.5: every depth × 1.3.
    cam = tmp_path / "cam.json"
    cam.write_text(json.dumps(dict(fx=83.2, fy=41.6, cx=63.5, cy=31.5, width=128, height=64)))
    # Without camera.json the run's training data must be read: here it is not, and the error
    # says how to give training's focal length instead.
    line = _error_line(
        "--run", run, "--images", image, "--out", tmp_path / "o0", "--intrinsics", cam
    )
    assert "--train_focal" in line and str(run) in line
    (run / "camera.json").write_text(json.dumps({"focal": 0.5}))
    plain = scaler(image, wave)
    other = MetricScaler.load(run, batch_size=BATCH, intrinsics=cam)
    np.testing.assert_allclose(other(image, wave), 1.3 * plain, rtol=1e-6)
    given = MetricScaler.load(run, batch_size=BATCH, intrinsics=cam, train_focal=0.65)
    np.testing.assert_allclose(given(image, wave), plain, rtol=1e-6)  # the same camera
    np.save(tmp_path / "a.npy", wave)
    out = tmp_path / "o1"
    args = ["--run", run, "--images", image, "--echoes", tmp_path / "a.npy", "--out", out]
    assert _run_cli(*args, "--batch_size", BATCH, "--intrinsics", cam) == 0
    np.testing.assert_array_equal(np.load(out / "a.npy"), other(image, wave))
    (run / "camera.json").write_text("{}")
    assert "camera.json: expected" in _error_line(*args, "--intrinsics", cam)
    with pytest.raises(SystemExit):
        _run_cli(*args, "--train_focal", "0.5")  # without --intrinsics: refused
    assert "--train_focal goes with --intrinsics" in capsys.readouterr().err


def test_intrinsics_for_an_echo_only_run_are_refused(monkeypatch, tmp_path):
    """An echo-only model reads no image: its depth does not follow the camera."""
    from avs_jax import metric_scaler

    config = load_config("avsnet", "tiny")
    config.model.variant = "echoes"
    monkeypatch.setattr(metric_scaler, "load_run", lambda run_dir, task, step: (None, None, config))
    with pytest.raises(BadInputError, match="'echoes' model of .* does not read the image"):
        MetricScaler.load(tmp_path, intrinsics=tmp_path / "intrinsics.json")


def test_a_photo_is_read_as_it_is_shown(tmp_path):
    """A phone stores a portrait photo sideways with an EXIF orientation: it is read turned, as
    a viewer shows it (and its outputs have the shown size); a photo without one is unchanged."""
    import PIL.Image

    from avs_jax.user_inputs import EXIF_ORIENTATION, read_image

    stored = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    exif = PIL.Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown turned 90° clockwise
    PIL.Image.fromarray(stored).save(tmp_path / "portrait.png", exif=exif)
    pixels, native = read_image(tmp_path / "portrait.png", (16, 8))
    assert native == (16, 8)
    np.testing.assert_allclose(pixels, np.rot90(stored, k=-1) / 255.0, atol=1e-6)
    PIL.Image.fromarray(stored).save(tmp_path / "plain.png")
    pixels, native = read_image(tmp_path / "plain.png", (8, 16))
    assert native == (8, 16)
    np.testing.assert_allclose(pixels, stored / 255.0, atol=1e-6)
