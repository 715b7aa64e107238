"""The BatVision builder reads real files tolerantly (issue 33): CSV columns, dtypes, image modes,
depth sizes, CSV row order; and names what it cannot read."""

import csv
import io
import logging
import random
from pathlib import Path

import batvision_fixture as fx  # tests/ is on sys.path (pyproject's pythonpath)
import numpy as np
import PIL.Image
import pytest

from avs_jax.data.transforms import decode_image
from avs_jax.data.transforms import resize_nearest as pipeline_resize_nearest
from tfds_batvision import csv_index, validate
from tfds_batvision.build import build_dataset
from tfds_batvision.validate import BadCsvIndexError, BadFileError

HW = (8, 12)


def _by_id(builder, split):
    ds = builder.as_data_source(split)
    return {ds[i]["sample_id"].decode(): ds[i] for i in range(len(ds))}


def _read(csv_path: Path) -> list[list[str]]:
    with open(csv_path, newline="") as f:
        return list(csv.reader(f))


def _write(csv_path: Path, rows: list[list[str]]) -> None:
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _select_columns(csv_path: Path, columns: list[str], extra: dict[str, str]) -> None:
    """Rewrites a CSV with only ``columns`` in that order, plus constant ``extra`` columns."""
    data = _read(csv_path)
    k = [data[0].index(c) for c in columns]
    out = [columns + list(extra)]
    out += [[r[i] for i in k] + list(extra.values()) for r in data[1:]]
    _write(csv_path, out)


def _add_column(csv_path: Path, name: str, values: list[str]) -> None:
    data = _read(csv_path)
    _write(csv_path, [data[0] + [name]] + [r + [v] for r, v in zip(data[1:], values)])


def _bv1_depth_mm_to_m(raw: np.ndarray) -> np.ndarray:
    m = raw.astype(np.float64) / 1000.0
    m[~np.isfinite(m) | (m < 0)] = 0
    return m.astype(np.float32)


# ---- point 2: only the columns that are read are required ---------------------------------------


def test_bv2_csv_with_only_the_read_columns_shuffled_and_an_extra_one_builds(tmp_path):
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 2}}, hw=HW, frames=64)
    want = _by_id(build_dataset("bv2", root, tmp_path / "ref"), "test")
    read = list(csv_index.BV2_COLUMNS)
    assert len(read) == 6
    random.Random(0).shuffle(read)
    _select_columns(root / "L/test.csv", read, {"recorded by": "someone"})
    got = _by_id(build_dataset("bv2", root, tmp_path / "data"), "test")
    assert set(got) == set(want) == {"L/0", "L/1"}
    for k in want:
        assert got[k]["image"] == want[k]["image"]
        np.testing.assert_array_equal(got[k]["depth"], want[k]["depth"])
        np.testing.assert_array_equal(got[k]["audio"], want[k]["audio"])


def test_bv2_csv_missing_a_read_column_names_only_that_column(tmp_path):
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 1}}, hw=HW, frames=64)
    fx.drop_csv_column(root / "L/test.csv", "depth file name")
    fx.drop_csv_column(root / "L/test.csv", "time")  # not read: its absence is fine
    with pytest.raises(BadFileError) as err:
        build_dataset("bv2", root, tmp_path / "data")
    assert err.value.path == str(root / "L/test.csv")
    assert err.value.problem.startswith("CSV lacks column(s) ['depth file name']; header is")


def test_csv_repeating_a_read_column_is_named(tmp_path):
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 1}}, hw=HW, frames=64)
    data = _read(root / "L/test.csv")
    _write(root / "L/test.csv", [data[0] + ["depth path"], data[1] + ["elsewhere/"]])
    with pytest.raises(BadFileError, match=r"CSV has column\(s\) \['depth path'\] more than once"):
        build_dataset("bv2", root, tmp_path / "data")


def test_bv1_csv_with_read_columns_shuffled_extra_and_no_index_builds(tmp_path):
    root = fx.write_bv1(tmp_path / "bv1", {"s": [1.0, 1.1]}, hw=HW, samples=256)
    read = list(reversed(csv_index.BV1_COLUMNS))
    _select_columns(root / "train.csv", read, {"operator": "x"})
    got = _by_id(build_dataset("bv1", root, tmp_path / "data"), "train")
    assert set(got) == {f"s/{fx.bv1_stem(1.0)}", f"s/{fx.bv1_stem(1.1)}"}
    fx.drop_csv_column(root / "train.csv", "audio path left")
    with pytest.raises(BadFileError) as err:
        build_dataset("bv1", root, tmp_path / "data2")
    assert err.value.path == str(root / "train.csv")
    assert err.value.problem.startswith("CSV lacks column(s) ['audio path left']; header is")


def test_bv1_session_column_is_a_scene_boundary_for_triples(tmp_path):
    times = [100 + 0.1 * i for i in range(90)]
    root = fx.write_bv1(tmp_path / "bv1", {"s": times}, hw=HW, samples=256)
    assert len(_by_id(build_dataset("bv1_triples", root, tmp_path / "one"), "train")) == 50
    # Two recording sessions in one folder: 45 frames each give centres 20..24 in each.
    _add_column(root / "train.csv", "session", ["A"] * 45 + ["B"] * 45)
    got = _by_id(build_dataset("bv1_triples", root, tmp_path / "two"), "train")
    want = {f"s/{fx.bv1_stem(times[i])}" for i in [*range(20, 25), *range(65, 70)]}
    assert set(got) == want


# ---- point 3: dtypes, image modes, depth sizes -----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float64])
def test_bv1_ears_of_any_real_dtype_are_cast_to_float32_unscaled(tmp_path, dtype):
    root = fx.write_bv1(tmp_path / "bv1", {"s": [1.0]}, hw=HW, samples=256)
    ears = []
    rec = fx.recording(np.random.default_rng(0), 256)  # a chirp onset for the builder to find
    for k, ear in enumerate(("left", "right")):
        x = (rec[k] * (3000 if k else -20000)).astype(dtype)
        np.save(root / "s/audio/raw_long" / f"{fx.bv1_stem(1.0)}_{ear}.npy", x)
        ears.append(x)
    (ex,) = _by_id(build_dataset("bv1", root, tmp_path / "data"), "train").values()
    assert ex["audio"].dtype == np.float32
    np.testing.assert_array_equal(ex["audio"], np.stack(ears).astype(np.float32))


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, "U3"])
def test_bv1_ear_of_complex_or_non_numeric_dtype_is_an_error(tmp_path, dtype):
    path = tmp_path / "ear.npy"
    np.save(path, np.zeros(4, dtype))
    with pytest.raises(BadFileError, match="expected a real-valued waveform"):
        validate.read_ear_npy(path)


def _image(mode: str, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (*HW, 4), dtype=np.uint8)
    if mode == "P":
        return PIL.Image.fromarray(rgba[..., :3]).quantize(colors=16)
    return PIL.Image.fromarray(rgba, "RGBA").convert(mode)


@pytest.mark.parametrize(
    "mode,fmt", [("RGBA", "PNG"), ("L", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("L", "JPEG")]
)
def test_non_rgb_images_are_stored_as_rgb_png(tmp_path, mode, fmt):
    root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 2}}, hw=HW, frames=64)
    name = f"camera_1.{fmt.lower()}"
    _image(mode).save(root / "L/camera" / name, format=fmt)
    fx.rewrite_csv_cell(root / "L/test.csv", 1, "camera file name", name)
    with PIL.Image.open(root / "L/camera" / name) as im:
        assert im.mode == mode
        want = np.asarray(im.convert("RGB"))
    got = _by_id(build_dataset("bv2", root, tmp_path / "data"), "test")
    with PIL.Image.open(io.BytesIO(got["L/1"]["image"])) as im:
        assert (im.format, im.mode) == ("PNG", "RGB")
        np.testing.assert_array_equal(np.asarray(im), want)
    decoded, native = decode_image(got["L/1"]["image"], HW)  # the pipeline's decoder
    assert native == HW
    np.testing.assert_allclose(decoded * 255.0, want, atol=1e-4)
    # An RGB file keeps its bytes.
    assert got["L/0"]["image"] == (root / "L/camera/camera_0.jpeg").read_bytes()


def test_sixteen_bit_image_is_an_error_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    PIL.Image.fromarray(np.full(HW, 40000, np.uint16)).save(path)
    with pytest.raises(BadFileError, match="image mode I;16 .16-bit or float."):
        validate.read_image_bytes(path)


def test_triples_store_non_rgb_frames_as_rgb(tmp_path):
    times = [10 + 0.1 * i for i in range(41)]
    root = fx.write_bv1(tmp_path / "bv1", {"s": times}, hw=HW, samples=256)
    frame = root / "s/camera/left" / f"{fx.bv1_stem(times[0])}.jpeg"  # the t-20 frame
    _image("L").save(frame, format="JPEG")
    with PIL.Image.open(frame) as im:
        want = np.asarray(im.convert("RGB"))
    (ex,) = _by_id(build_dataset("bv1_triples", root, tmp_path / "data"), "train").values()
    with PIL.Image.open(io.BytesIO(ex["images"][0])) as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), want)


@pytest.mark.parametrize("layout", ["bv1", "bv2"])
def test_smaller_depth_is_resized_nearest_to_the_image_with_one_warning(tmp_path, caplog, layout):
    if layout == "bv2":
        root = fx.write_bv2(tmp_path / "bv2", {"L": {"test": 3}}, hw=HW, frames=64)
        paths = {f"L/{i}": root / f"L/depth/depth_{i}.npy" for i in range(3)}
        small = [np.arange(24, dtype=np.uint16).reshape(4, 6) * 100 for _ in range(2)]
    else:
        times = [1.0, 1.1, 1.2]
        root = fx.write_bv1(
            tmp_path / "bv1", {"s": times}, split_of=lambda s, j: "test", hw=HW, samples=256
        )
        paths = {f"s/{fx.bv1_stem(t)}": root / "s/depth" / f"{fx.bv1_stem(t)}.npy" for t in times}
        small = [np.arange(24, dtype=np.float32).reshape(4, 6) * 100 for _ in range(2)]
        small[1][0, 0], small[1][1, 1] = np.inf, np.nan  # invalid stays exactly 0, never blended
    ids = list(paths)
    for k, d in zip(ids[1:], small):
        np.save(paths[k], d)
    with caplog.at_level(logging.WARNING):
        got = _by_id(build_dataset(layout, root, tmp_path / "data"), "test")
    for k, d in zip(ids[1:], small):
        want = pipeline_resize_nearest(_bv1_depth_mm_to_m(d), HW)
        assert got[k]["depth"].shape == HW
        np.testing.assert_array_equal(got[k]["depth"], want)
    warned = [r for r in caplog.records if "resized to the image size" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert "depth map is 4x6 but its image is 8x12" in warned[0].getMessage()


def test_resize_nearest_is_the_pipelines():
    x = np.arange(35, dtype=np.float32).reshape(5, 7)
    for hw in [(8, 12), (3, 4), (5, 7), (10, 3)]:
        np.testing.assert_array_equal(
            validate.resize_nearest(x, hw), pipeline_resize_nearest(x, hw)
        )


def test_bv1_plus_inf_depth_is_invalid_not_the_cap(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.array([[np.inf, -np.inf, np.nan, -1.0, 0.0, 12000.0]], np.float32))
    np.testing.assert_array_equal(validate.read_depth_mm(path, False), [[0, 0, 0, 0, 0, 12.0]])


# ---- point 4: CSV row order and time stamps for triples ----------------------------------------


def _triples(builder) -> dict[str, tuple]:
    return {
        k: (tuple(ex["images"]), ex["poses"].tobytes())
        for k, ex in _by_id(builder, "train").items()
    }


def test_shuffled_bv1_rows_give_the_same_triples(tmp_path):
    a = [1000 + 0.1 * i for i in range(44)] + [2000 + 0.1 * i for i in range(41)]  # time jump
    root = fx.write_bv1(
        tmp_path / "bv1", {"2019.08.26": a, "2019.08.27": a[:42]}, hw=HW, samples=256, poses=True
    )
    want = _triples(build_dataset("bv1_triples", root, tmp_path / "ordered"))
    assert len(want) == 4 + 1 + 2
    data = _read(root / "train.csv")
    body = data[1:]
    random.Random(1).shuffle(body)
    _write(root / "train.csv", [data[0]] + body)
    assert _triples(build_dataset("bv1_triples", root, tmp_path / "shuffled")) == want


def _rename_frame(root: Path, session: str, t: float, new_stem: str) -> None:
    """Gives frame ``t`` of ``session`` the file stem ``new_stem`` (files and CSV)."""
    old = fx.bv1_stem(t)
    csv_path = root / "train.csv"
    text = csv_path.read_text()
    assert text.count(f"/{old}") == 4
    csv_path.write_text(text.replace(f"/{old}", f"/{new_stem}"))
    for f in (root / session).rglob(f"{old}*"):
        f.rename(f.with_name(f.name.replace(old, new_stem)))


@pytest.mark.parametrize("skip_bad", [False, True])
def test_unparseable_time_stops_triples_naming_csv_line_and_value(tmp_path, skip_bad):
    times = [10 + 0.1 * i for i in range(41)]
    root = fx.write_bv1(tmp_path / "bv1", {"s": times}, hw=HW, samples=256)
    _rename_frame(root, "s", times[2], "frame_b")  # data row 3, line 4
    with pytest.raises(BadCsvIndexError) as err:
        build_dataset("bv1_triples", root, tmp_path / "data", skip_bad=skip_bad)
    assert err.value.path == str(root / "train.csv")
    assert err.value.problem.startswith(
        "line 4: no time stamp for frame triples: no time/timestamp value, and the file stem "
        "'frame_b' is neither HHMMSS.micro nor a number"
    )
    assert not list((tmp_path / "data").glob("batvision/bv1_triples/*"))
    # A time column value that does not parse is named too.
    _add_column(root / "train.csv", "time", ["noon"] + [""] * 40)
    _rename_frame(root, "s", times[0], "frame_a")
    with pytest.raises(
        BadCsvIndexError, match="line 2: no time stamp for frame triples: time 'noon'"
    ):
        build_dataset("bv1_triples", root, tmp_path / "data", skip_bad=skip_bad)
    # Plain samples need no time.
    b = build_dataset("bv1", root, tmp_path / "plain", skip_bad=skip_bad)
    assert {"s/frame_a", "s/frame_b"} <= set(_by_id(b, "train")) and not b.skipped


def test_time_from_column_stem_and_non_finite_values():
    assert csv_index.bv1_time({"time": "12.5"}, "180336.309017") == 12.5
    assert csv_index.bv1_time({"time": "x"}, "180336.5") == 18 * 3600 + 3 * 60 + 36.5
    assert csv_index.bv1_time({"timestamp": "7"}, "a") == 7.0
    assert csv_index.bv1_time({}, "42.25") == 42.25
    assert csv_index.bv1_time({"time": "nan"}, "inf") is None


def test_time_ordered_is_stable_and_keeps_sessions_together():
    spec = [("B", 2.0), ("A", 5.0), ("B", 1.0), ("A", 5.0), ("A", 3.0)]
    rows = [
        csv_index.Row(sample_id=str(i), csv_path="c", line=i + 2, group=s, camera="", time=t)
        for i, (s, t) in enumerate(spec)
    ]
    ordered = csv_index.time_ordered(rows)
    assert [r.sample_id for r in ordered] == ["4", "1", "3", "2", "0"]  # ties: CSV order
    rows[0].time = None
    with pytest.raises(BadCsvIndexError, match="line 2: no time stamp"):
        csv_index.time_ordered(rows)
