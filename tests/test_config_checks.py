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
    c.data = ml_collections.ConfigDict({"batch_size": 4, "image_size": (64, 128),
                                        "max_depth": 30.0, **data})
    c.init_from = ""
    return c


def test_valid_config_passes():
    validate(_config())


@pytest.mark.parametrize("field,value,message", [
    ("batch_size", 0, "config.data.batch_size must be > 0"),
    ("max_depth", -1.0, "config.data.max_depth must be > 0"),
    ("manual_dir", "/no/such/dir", "config.data.manual_dir: no such file or directory: /no/such/dir"),
])
def test_impossible_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(_config(**{field: value}))


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
    cfg.write_text("import ml_collections\n"
                   "def get_config(arg=None):\n"
                   "    c = ml_collections.ConfigDict()\n"
                   "    c.mode = 'evaluate'\n"
                   "    c.data = ml_collections.ConfigDict({'batch_size': 2})\n"
                   "    return c\n")
    base = [sys.executable, "-m", "avs_jax.main", f"--config={cfg}", f"--workdir={tmp_path}/w"]
    bad_value = subprocess.run(base + ["--config.data.batch_size=0"], cwd=ROOT,
                               capture_output=True, text=True)
    assert bad_value.returncode != 0
    assert "config.data.batch_size must be > 0" in bad_value.stderr
    typo = subprocess.run(base + ["--config.data.batch_sise=3"], cwd=ROOT, capture_output=True,
                          text=True)
    assert typo.returncode != 0 and "batch_size" in typo.stderr
    assert not (tmp_path / "w").exists()  # nothing ran


def test_main_reports_a_bad_input_found_later_in_one_line(tmp_path):
    """An input error met while running (here a dataset that is not built) ends the run with one
    line naming the problem and the folder, exit status 1, not a traceback."""
    empty = tmp_path / "tfds"
    empty.mkdir()
    cmd = [sys.executable, "-m", "avs_jax.main", "--config=configs/avsnet.py:tiny",
           f"--workdir={tmp_path}/w", f"--config.data.data_dir={empty}"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("avs_jax: DatasetNotFoundError: dataset batvision/bv2 is not built in "
                           f"{empty}"), last
    assert "Traceback" not in r.stderr


def test_input_errors_keep_their_builtin_types():
    """Callers that catch ValueError / FileNotFoundError still catch the avs_jax errors."""
    from avs_jax.datasets import DatasetNotFoundError
    from avs_jax.errors import BadInputError, InputError, MissingInputError
    from avs_jax.train.loop import NonFiniteLossError

    assert issubclass(BadInputError, ValueError) and issubclass(BadInputError, InputError)
    assert issubclass(MissingInputError, FileNotFoundError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, InputError)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
    assert issubclass(NonFiniteLossError, FloatingPointError)
    assert issubclass(NonFiniteLossError, InputError)
