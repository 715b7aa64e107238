"""Configs that cannot run are errors that name the field, before anything compiles."""

import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest

from avs_jax.config_checks import ConfigError, validate

ROOT = Path(__file__).resolve().parents[1]


def _config(**data):
    c = ml_collections.ConfigDict()
    c.mode = "train"
    c.data = ml_collections.ConfigDict(
        {"batch_size": 4, "image_size": (64, 128), "max_depth": 30.0, **data}
    )
    c.init_from = ""
    return c


def test_valid_config_passes():
    validate(_config())


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("batch_size", 0, "config.data.batch_size must be > 0"),
        ("max_depth", -1.0, "config.data.max_depth must be > 0"),
        (
            "manual_dir",
            "/no/such/dir",
            "config.data.manual_dir: no such file or directory: /no/such/dir",
        ),
    ],
)
def test_impossible_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(_config(**{field: value}))


@pytest.mark.parametrize(
    "stft,message",
    [
        ({"align": "first"}, r"config.data.stft.align must be one of \('onset', 'off'\)"),
        ({"align": "onset", "onset": -5}, "config.data.stft.onset must be an integer >= 0"),
        ({"align": "onset", "onset": 287.5}, "config.data.stft.onset must be an integer >= 0"),
    ],
)
def test_onset_alignment_settings_name_the_field(stft, message):
    with pytest.raises(ConfigError, match=message):
        validate(_config(stft=ml_collections.ConfigDict(stft)))
    validate(_config(stft=ml_collections.ConfigDict({"align": "off", "onset": 287})))


def test_evaluation_min_depth_must_be_positive():
    from avs_jax.config_files import load_config

    c = load_config("evaluate")
    validate(c)
    c.min_depth = 0.0
    with pytest.raises(ConfigError, match=r"config.min_depth must be > 0, got 0.0"):
        validate(c)


def test_pose_rotation_scale_must_be_positive():
    c = _config()
    c.model = ml_collections.ConfigDict({"pose_rotation_scale": 0.3})
    validate(c)
    c.model.pose_rotation_scale = 0.0
    with pytest.raises(ConfigError, match="config.model.pose_rotation_scale must be > 0, got 0.0"):
        validate(c)


def test_unknown_mode_and_missing_init_file():
    c = _config()
    c.mode = "fly"
    with pytest.raises(ConfigError, match="config.mode must be one of"):
        validate(c)
    c = _config()
    c.init_from = "/no/such/checkpoint"
    with pytest.raises(ConfigError, match="config.init_from: no such pretrained checkpoint"):
        validate(c)


def test_main_rejects_bad_override_before_running(tmp_path):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "import ml_collections\n"
        "def get_config(arg=None):\n"
        "    c = ml_collections.ConfigDict()\n"
        "    c.mode = 'evaluate'\n"
        "    c.data = ml_collections.ConfigDict({'batch_size': 2})\n"
        "    return c\n"
    )
    base = [sys.executable, "-m", "avs_jax.main", f"--config={cfg}", f"--workdir={tmp_path}/w"]
    bad_value = subprocess.run(
        base + ["--config.data.batch_size=0"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad_value.returncode != 0
    assert "config.data.batch_size must be > 0" in bad_value.stderr
    typo = subprocess.run(
        base + ["--config.data.batch_sise=3"], cwd=ROOT, capture_output=True, text=True
    )
    assert typo.returncode == 1
    # One line naming the override, the section and what it has (no chained tracebacks).
    assert typo.stderr.strip() == (
        "avs_jax: --config.data.batch_sise=3: config.data has no field 'batch_sise' (its "
        f"fields: batch_size) in {cfg}"
    ), typo.stderr
    assert not (tmp_path / "w").exists()  # nothing ran


@pytest.mark.parametrize(
    "config,message",
    [
        (
            "configs/no_such.py",
            "avs_jax: --config=configs/no_such.py: no such config file "
            f"{ROOT / 'configs' / 'no_such.py'}",
        ),
        (
            "configs/evaluate.py:bogus",
            "avs_jax: flag --config=configs/evaluate.py: ValueError: "
            "configs/evaluate.py: unknown argument 'bogus'; use '' or "
            "'export'",
        ),
    ],
)
def test_main_names_a_config_file_that_does_not_load_in_one_line(tmp_path, config, message):
    r = subprocess.run(
        [sys.executable, "-m", "avs_jax.main", f"--config={config}", f"--workdir={tmp_path}/w"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.strip() == message, r.stderr


def test_evaluate_config_datasets_move_one_at_a_time():
    """`--config.datasets.bv2.data_dir=X` moves bv2 only: bv1 keeps config.data_dir."""
    from ml_collections.config_flags import config_path

    from avs_jax.config_files import load_config
    from avs_jax.evaluation.evaluate import dataset_config

    c = load_config("evaluate")
    config_path.set_value("datasets.bv2.data_dir", c, "/elsewhere")  # what the override does
    assert c.data_dir == "data/tfds"
    assert dataset_config(c, "bv2").data_dir == "/elsewhere"
    assert dataset_config(c, "bv1").data_dir == "data/tfds"
    c.data_dir = "/all"  # the shared folder still moves the datasets not set on their own
    assert dataset_config(c, "bv1").data_dir == "/all"
    assert dataset_config(c, "bv2").data_dir == "/elsewhere"


def test_a_batch_that_does_not_split_over_the_devices_is_refused_before_reading_data(
    monkeypatch, tmp_path
):
    import jax

    from avs_jax.config_files import load_config
    from avs_jax.errors import BadInputError
    from avs_jax.train import run

    monkeypatch.setattr(jax, "device_count", lambda: 4)
    config = load_config("avsnet", "tiny")
    config.data.batch_size = 6
    config.data.data_dir = str(tmp_path / "not_built")  # reading it would be another error
    with pytest.raises(
        BadInputError,
        match=r"config.data.batch_size=6 does not split over the 4 "
        r"cpu devices: use a multiple of 4 \(e.g. 4 or 8\)",
    ):
        run.train(config, str(tmp_path / "w"))


def test_main_reports_a_bad_input_found_later_in_one_line(tmp_path):
    """An input error met while running (here a dataset that is not built) ends the run with one
    line naming the problem and the folder, exit status 1, not a traceback."""
    empty = tmp_path / "tfds"
    empty.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "avs_jax.main",
        "--config=configs/avsnet.py:tiny",
        f"--workdir={tmp_path}/w",
        f"--config.data.data_dir={empty}",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"avs_jax: DatasetNotFoundError: dataset batvision/bv2 is not built in {empty}"
    ), last
    assert "Traceback" not in r.stderr


def test_input_errors_keep_their_builtin_types():
    """Callers that catch ValueError / FileNotFoundError still catch the avs_jax errors."""
    from avs_jax.data.datasets import DatasetNotFoundError
    from avs_jax.errors import BadInputError, InputError, MissingInputError
    from avs_jax.train.loop import NonFiniteLossError

    assert issubclass(BadInputError, ValueError) and issubclass(BadInputError, InputError)
    assert issubclass(MissingInputError, FileNotFoundError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, InputError)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
    assert issubclass(NonFiniteLossError, FloatingPointError)
    assert issubclass(NonFiniteLossError, InputError)


def test_quickstart_rooms_are_not_its_held_out_or_pretraining_rooms():
    """Rooms are drawn from (seed, index): a quickstart whose seed (or + 1) is a held-out set's
    would test on rooms it trained on, and so would one on the shipped weights' corpus seeds."""
    from avs_jax.config_files import load_config
    from avs_jax.sim_pretrain import SHIPPED_SEED

    c = load_config("quickstart", "")
    c.heldout.enabled = True
    validate(c)  # seeds 0 and 1
    c.seed = 1009  # + 1 is small_rooms' seed
    with pytest.raises(ConfigError, match=r"held-out set 'small_rooms' with \[1010, 1011\]"):
        validate(c)
    c.heldout.enabled = False
    validate(c)  # the held-out sets are not simulated
    c.seed = SHIPPED_SEED + 2
    with pytest.raises(ConfigError, match=r"shipped weights \(stage1, relative\)"):
        validate(c)
    c.stage1.init_from = c.relative.init_from = ""  # from scratch: no such corpus
    validate(c)
