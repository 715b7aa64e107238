"""Tests of the chirp onset: detection on real and simulated recordings, and what alignment does.

The physics: the chirp reaches the ears first by the direct path (0.1 m), then by the echo of a
wall ``d`` metres ahead (path ``2 sqrt(d**2 + 0.1**2)``). Once a recording is moved so that its
direct path sits at ``CANONICAL_ONSET``, the echo sits at the same STFT column whatever the
recording's lead-in: BV1 (chirp at 980) read with BV2's cut then sees the same room as BV2
(chirp at 287), instead of one 693 samples (2.7 m) deeper.
"""

import csv
import os

import batvision_fixture as fx
import numpy as np
import pytest
import soundfile as sf

from avs_jax.data import audio
from tfds_batvision import onset, simulate
from tfds_batvision.sim import acoustics

SAMPLE_WAV = fx.REAL_BV2_WAV
FS = acoustics.SAMPLE_RATE
C = acoustics.SPEED_OF_SOUND
HALF_SPACING = acoustics.MIC_SPACING_M / 2
# The simulator's chirp fades in over n // 20 = 6 samples, so the envelope reaches 10% of its
# peak ~2 samples after the true arrival (measured 2.1 on every recording): the detector is
# expected within [0, 3] samples after it.
LATE = (0, 3)


def _wall_echo(distance: float, arrival: int, samples: int, noise: float = 0.0, seed: int = 0):
    """[2, samples] recording of one wall ``distance`` m ahead, the direct path at ``arrival``."""
    return acoustics.single_reflector_echo(
        distance,
        num_samples=samples,
        chirp_start=arrival - acoustics.DIRECT_PATH_SAMPLES,
        noise_std=noise,
        rng=np.random.default_rng(seed),
    )


def _true_arrival(chirp_start: int) -> float:
    """Direct-path arrival (fractional sample) of a chirp emitted at ``chirp_start``."""
    return chirp_start + HALF_SPACING / C * FS


def test_real_bv2_sample_onset():
    pcm, fs = sf.read(SAMPLE_WAV, dtype="int32")
    assert fs == FS
    x = pcm.T / 2.0**31
    # By eye the direct path rises out of the noise (0.008 at 282) to 0.16 at 292; 10% of the
    # peak is crossed at 287 in the left ear.
    assert onset.detect_onset(x) == 287
    # Whichever ear is louder, the onset does not move by more than a sample.
    assert abs(onset.detect_onset(x * np.array([[1.0], [0.05]])) - 287) <= 1
    assert abs(onset.detect_onset(x * np.array([[0.05], [1.0]])) - 287) <= 1


@pytest.mark.parametrize("noise", [1e-3, 1e-2, 3e-2])
def test_detects_simulated_arrivals_in_noise(noise):
    """Walls from 0.5 to 8 m, lead-ins from 150 to 1000 samples, noise up to 6% of the peak."""
    for k, (d, start) in enumerate([(0.5, 150), (1.5, 274), (3.0, 611), (8.0, 967), (2.2, 1000)]):
        x = acoustics.single_reflector_echo(
            d, num_samples=4200, chirp_start=start, noise_std=noise, rng=np.random.default_rng(k)
        )
        err = onset.detect_onset(x) - _true_arrival(start)
        assert LATE[0] <= err <= LATE[1] + 1, (d, start, err)


def test_a_click_before_the_chirp_is_not_the_onset():
    x = _wall_echo(3.0, 980, 4180, noise=1e-3)
    x[0, 100] = 0.4  # one sample, as loud as the direct path
    x[1, 500:502] = -0.3
    assert LATE[0] <= onset.detect_onset(x) - 980 <= LATE[1]


def test_silence_and_noise_have_no_onset():
    with pytest.raises(onset.NoOnsetError, match="no chirp"):
        onset.detect_onset(np.zeros((2, 3200)))
    noise = np.random.default_rng(0).normal(0, 0.01, (2, 3200))
    with pytest.raises(onset.NoOnsetError, match="noise floor"):
        onset.detect_onset(noise)


@pytest.mark.parametrize("samples", [3200, 4180, 20000])
def test_white_noise_alone_never_has_an_onset(samples):
    """A sample-wise peak-to-floor test alone let 20-75 of these 200 through (more the longer the
    recording: the peak grows with the length, the floor does not)."""
    for seed in range(200):
        noise = np.random.default_rng([seed, samples]).normal(0, 0.01, (2, samples))
        with pytest.raises(onset.NoOnsetError, match="noise floor"):
            onset.detect_onset(noise)


def test_a_noisy_chirp_still_has_its_onset():
    """Noise at 6% of the direct path's peak: the smoothed test keeps the chirp (ratio ~7 > 4)."""
    x = _wall_echo(3.0, 980, 4180, noise=6e-2, seed=3)
    assert abs(onset.detect_onset(x) - 980) <= 4


def test_align_to_onset_hand_case():
    x = np.arange(1, 11, dtype=np.float32).reshape(2, 5)  # [[1..5], [6..10]]
    np.testing.assert_array_equal(onset.align_to_onset(x, 3, target=1), [[3, 4, 5], [8, 9, 10]])
    np.testing.assert_array_equal(
        onset.align_to_onset(x, 1, target=3), [[0, 0, 1, 2, 3, 4, 5], [0, 0, 6, 7, 8, 9, 10]]
    )
    np.testing.assert_array_equal(onset.align_to_onset(x, 2, target=2), x)


def _column_energy(spec: np.ndarray) -> np.ndarray:
    """Energy per STFT column [T'] of a [F, T', 2] magnitude."""
    return (spec.astype(np.float64) ** 2).sum(axis=(0, 2))


def _echo_column(spec: np.ndarray, after: int) -> int:
    """First column after ``after`` whose energy reaches 10% of the largest energy after it."""
    e = _column_energy(spec)[after:]
    return after + int(np.argmax(e >= 0.1 * e.max()))


@pytest.mark.parametrize("distance", [2.0, 5.0])
def test_bv1_and_bv2_leadins_give_one_stft_after_alignment(distance):
    """Same room, chirp at 980 (BV1 raw_long, 4180 samples) and at 287 (BV2, 20000 samples)."""
    bv1 = _wall_echo(distance, 980, 4180)
    bv2 = _wall_echo(distance, 287, 20000)

    def features(x, align):
        if align:
            x = onset.align_to_onset(x, onset.detect_onset(x))
        return audio.batvision_echo_stft(x, max_depth=30.0)  # BV2's cut, as the paper tests BV1

    a1, a2 = features(bv1, True), features(bv2, True)
    # Identical signals behind different lead-ins, up to where the shorter BV1 file ends: aligned
    # it holds 4180 - 693 = 3487 samples, then the cut's zero padding (BV2 goes on with the
    # room's low-frequency tail). Column t sees samples 16 t +- 32: compare up to 12 m (200).
    n = 200
    assert a1.shape == a2.shape
    # Float64 convolution at two offsets rounds differently (~1e-15 relative), float32 storage
    # of the magnitude adds 6e-8 relative.
    np.testing.assert_allclose(a1[:, :n], a2[:, :n], rtol=1e-5, atol=1e-6 * a2.max())

    # Physics of the cut: the wall's echo, (2 sqrt(d^2 + 0.1^2) - 0.1) / c after the direct path,
    # starts at the STFT column of CANONICAL_ONSET + that delay (centred frames: column t is
    # centred on sample 16 t; a 64-sample window reaches 2 columns early).
    delay = (2 * np.hypot(distance, HALF_SPACING) - HALF_SPACING) / C * FS
    expected = (onset.CANONICAL_ONSET + delay) / audio.HOP_LENGTH
    direct_end = (onset.CANONICAL_ONSET + 132 + audio.WIN_LENGTH) // audio.HOP_LENGTH  # 3 ms chirp
    got = _echo_column(a1, direct_end)
    assert -2 <= got - expected <= 1, (got, expected)  # 1 column = 16 samples = 6 cm of range

    # Without alignment the BV1 echo lands 693 samples = 43 columns = 2.7 m later.
    raw = features(bv1, False)
    late = _echo_column(raw, direct_end + 693 // audio.HOP_LENGTH) - got
    assert 42 <= late <= 45


def test_simulator_jitter_moves_each_recording_and_detection_follows(tmp_path):
    root = simulate.simulate_dataset(
        "bv1",
        str(tmp_path / "bv1"),
        2,
        seed=3,
        height=16,
        width=32,
        frames_per_scene=6,
        progress=False,
        onset_jitter=40,
    )
    spec = simulate.LAYOUTS["bv1"]
    cfg = simulate.scene_config("bv1", height=16, width=32, frames_per_scene=6, onset_jitter=40)
    arrivals, errors = [], []
    for scene in range(2):
        for frame in range(6):
            start = simulate._chirp_start(spec, cfg, 3, scene, frame)
            arrivals.append(start + acoustics.DIRECT_PATH_SAMPLES)
    rows = []
    for split in simulate.SPLITS:
        with open(os.path.join(root, f"{split}.csv")) as f:
            rows += [r for r in csv.DictReader(f)]
    by_stem = {}
    for r in rows:
        x = np.stack(
            [np.load(os.path.join(root, r[k])) for k in ("audio path left", "audio path right")]
        )
        by_stem[(r["session"], int(r["index"]))] = onset.detect_onset(x)
    measured = [by_stem[k] for k in sorted(by_stem)]
    for got, start in zip(measured, [a - acoustics.DIRECT_PATH_SAMPLES for a in arrivals]):
        errors.append(got - _true_arrival(start))
    assert len(measured) == 12
    assert all(LATE[0] <= e <= LATE[1] for e in errors), errors
    assert np.ptp(arrivals) > 20  # the jitter really moves the recordings
    assert all(abs(a - 980) <= 40 for a in arrivals)


def test_outliers_are_named():
    onsets = {f"s{i}": 287 + (i % 5) for i in range(50)}
    onsets["late"] = 980
    med, allowed, out = onset.onset_outliers(onsets)
    assert med == 289 and allowed == onset.OUTLIER_MIN_SAMPLES and out == {"late": 980}
    assert "51 recordings" in onset.onset_summary(onsets) and "max 980" in onset.onset_summary(
        onsets
    )


def _write_wav(path, x: np.ndarray) -> None:
    sf.write(path, np.round(x.T * 2.0**31).astype(np.int32), FS, subtype="PCM_32")


def test_builder_stores_each_onset_logs_the_split_and_names_outliers(tmp_path, caplog):
    from tfds_batvision.build import build_dataset

    root = fx.write_bv2(tmp_path / "bv2", {"L": {"train": 6}}, hw=(8, 16), frames=4000)
    # Recordings of one rig: chirp at 287 +- a few samples; one recorder started 500 late.
    arrivals = [287, 290, 285, 288, 787, 286]
    for i, a in enumerate(arrivals):
        _write_wav(root / "L" / "audio" / f"audio_{i}.wav", _wall_echo(2.0 + i, a, 4000, 1e-3, i))
    with caplog.at_level("INFO"):
        builder = build_dataset("bv2", root, tmp_path / "data")
    src = builder.as_data_source("train")
    got = {ex["sample_id"].decode(): int(ex["audio_onset"]) for ex in src}
    for i, a in enumerate(arrivals):
        assert LATE[0] <= got[f"L/{i}"] - a <= LATE[1]
    assert "6 recordings" in builder.onset_stats["train"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    outlier = [w for w in warnings if "from the split's median onset" in w]
    assert len(outlier) == 1 and "1 recording(s)" in outlier[0] and "L/4 at 78" in outlier[0]


def test_a_recording_without_a_chirp_is_a_bad_file(tmp_path):
    from tfds_batvision.build import build_dataset
    from tfds_batvision.validate import BadFileError

    root = fx.write_bv2(tmp_path / "bv2", {"L": {"train": 3}}, hw=(8, 16), frames=2000)
    silent = root / "L" / "audio" / "audio_1.wav"
    _write_wav(silent, np.random.default_rng(0).normal(0, 1e-3, (2, 2000)))
    with pytest.raises(BadFileError, match="no chirp stands out of the noise") as err:
        build_dataset("bv2", root, tmp_path / "data")
    assert err.value.path == str(silent)
    builder = build_dataset("bv2", root, tmp_path / "data2", skip_bad=True)
    assert builder.info.splits["train"].num_examples == 2
    assert [p for p, _ in builder.skipped] == [str(silent)]
