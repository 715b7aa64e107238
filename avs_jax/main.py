"""Entry point: `python -m avs_jax.main --config=configs/<experiment>.py[:arg] --workdir=DIR`.

The config file says what runs (`config.mode`): "train" (either training stage; the config's
`task` picks AVS-Net stage 1 or the relative depth model), "evaluate" (checkpoint-based
evaluation, the paper's tables) or "quickstart" (the whole paper on simulated data). Any field
can be overridden on the command line, e.g. `--config.data.batch_size=4`; an unknown field, a
missing file or an impossible value is an error before anything compiles. A bad input found
later (a dataset that is not built, a checkpoint that does not fit, a malformed BatVision file)
ends the run with one line naming it, exit status 1; `--verbosity=1` logs the traceback too.
"""

from __future__ import annotations

import importlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from avs_jax import config_checks
from avs_jax.errors import InputError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with ':arg' (e.g. configs/avsnet.py:tiny).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")

# mode -> "module:function(config, workdir)"; imported only when that mode runs.
RUNNERS = {
    "train": "avs_jax.train.run:train",
    "evaluate": "avs_jax.evaluation.evaluate:evaluate",
    "quickstart": "avs_jax.quickstart:run",
}


def run(config, workdir: str):
    """Validates `config` and runs its mode in `workdir`; returns what the runner returns."""
    config_checks.validate(config)
    module_name, fn_name = RUNNERS[config.mode].split(":")
    runner = getattr(importlib.import_module(module_name), fn_name)
    os.makedirs(workdir, exist_ok=True)
    return runner(config, workdir)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _WORKDIR.value is None:
        raise app.UsageError("--workdir is required")
    config = _CONFIG.value
    try:
        config_checks.validate(config)
    except config_checks.ConfigError as e:
        raise app.UsageError(f"bad config: {e}") from e
    logging.info("mode %s, workdir %s", config.mode, _WORKDIR.value)
    # The builder's BadFileError (tfds_batvision stays free of avs_jax, so it is not an InputError).
    from tfds_batvision.validate import BadFileError  # noqa: PLC0415

    try:
        run(config, _WORKDIR.value)
    except (InputError, BadFileError) as e:
        logging.debug("traceback of the error below", exc_info=True)
        sys.exit(f"avs_jax: {type(e).__name__}: {e}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
