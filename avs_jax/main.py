"""Entry point: `python -m avs_jax.main --config=configs/<experiment>.py[:arg] --workdir=DIR`.

The config file says what runs (`config.mode`): "train" (either training stage; the config's
`task` picks AVS-Net stage 1 or the relative depth model), "evaluate" (checkpoint-based
evaluation, the paper's tables), "quickstart" (the whole paper on simulated data) or
"sim_pretrain" (the quickstart's pretrained weights, from simulated rooms of other seeds). Any field
can be overridden on the command line, e.g. `--config.data.batch_size=4`; an unknown field, a
missing file or an impossible value is an error before anything compiles. A bad input found
later (a dataset that is not built, a checkpoint that does not fit, a malformed BatVision file)
ends the run with one line naming it, exit status 1; `--verbosity=1` logs the traceback too.
A run stopped by SIGTERM or Ctrl-C saves a checkpoint and exits with 128 + the signal number
(143, 130), as schedulers expect of a process the signal ended. One run at a time holds a
workdir (`workdir/.lock`).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Callable

from absl import app, flags, logging
from ml_collections import config_flags

from avs_jax import config_checks
from avs_jax.config_files import exec_config_file
from avs_jax.errors import InputError
from avs_jax.workdir_lock import workdir_lock

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file, optionally with ':arg' (e.g. configs/avsnet.py:tiny).",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")

# mode -> "module:function(config, workdir)"; imported only when that mode runs.
RUNNERS = {
    "train": "avs_jax.train.run:train",
    "evaluate": "avs_jax.evaluation.evaluate:evaluate",
    "quickstart": "avs_jax.quickstart:run",
    "sim_pretrain": "avs_jax.sim_pretrain:run",
}


def run(config, workdir: str):
    """Validates `config` and runs its mode in `workdir`; returns what the runner returns."""
    config_checks.validate(config)
    module_name, fn_name = RUNNERS[config.mode].split(":")
    runner = getattr(importlib.import_module(module_name), fn_name)
    os.makedirs(workdir, exist_ok=True)
    # Training takes the lock in its loop, on process 0 only: on several hosts every process
    # runs this command in the same workdir. Evaluation and the quickstart run on one host.
    with workdir_lock(workdir, enabled=config.mode != "train"):
        return runner(config, workdir)


def _config_arg(argv: list[str]) -> str | None:
    """The value of --config in argv ("--config=X" or "--config X")."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _load_config_file(path: str):
    """The config of "--config=FILE[:ARG]", loaded as ml_collections does (for an error)."""
    file, _, arg = path.partition(":")
    module = exec_config_file(file)
    return module.get_config(arg) if arg else module.get_config()


def _unknown_field(config, argv: list[str]) -> str | None:
    """ "--config.a.b=1: config.a has no field 'b' ..." for the first override naming no field."""
    for arg in argv:
        m = re.match(r"--config\.([^=]+)", arg)
        if not m:
            continue
        node, path = config, []
        for part in m.group(1).split("."):
            fields = list(node.keys()) if hasattr(node, "keys") else []
            if part not in fields:
                where = ".".join(["config"] + path)
                if not fields:
                    return f"{arg}: {where} is a value, not a section with fields"
                known = ", ".join(sorted(fields))
                return f"{arg}: {where} has no field {part!r} (its fields: {known})"
            node = node[part]
            path.append(part)
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with one line instead of a traceback for a bad --config.

    ml_collections reports a missing config file only when the config is first read, and an
    override of a field that does not exist as three chained tracebacks.
    """
    path = _config_arg(argv)
    if path is not None:
        file = path.split(":", 1)[0]
        if not os.path.isfile(file):
            sys.exit(f"avs_jax: --config={path}: no such config file {os.path.abspath(file)}")
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # an override of a field the config does not have
        try:
            said = _unknown_field(_load_config_file(path), argv[1:])
        except Exception:  # pylint: disable=broad-except
            said = None
        sys.exit(f"avs_jax: {said or f'unknown config field {e}'} in {path}")
    except flags.Error as e:
        # A config file that fails to load gives its traceback as the message: keep its end.
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        where = lines[0].split(":", 1)[0] if len(lines) > 1 else ""
        sys.exit(f"avs_jax: {where + ': ' if where else ''}{lines[-1] if lines else e}")


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
    exit_on_error(run, config, _WORKDIR.value)


def exit_on_error(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, with the command's exits: a bad input (InputError, or the builder's
    BadFileError) is one line naming it and exit status 1; a training stopped by a signal exits
    with 128 + its number after its checkpoint."""
    # tfds_batvision stays free of avs_jax, so its BadFileError is not an InputError.
    from avs_jax.train.interrupts import TrainingInterrupted  # noqa: PLC0415
    from tfds_batvision.validate import BadFileError  # noqa: PLC0415

    try:
        return fn(*args)
    except (InputError, BadFileError) as e:
        logging.debug("traceback of the error below", exc_info=True)
        sys.exit(f"avs_jax: {type(e).__name__}: {e}")
    except TrainingInterrupted as e:
        print(f"avs_jax: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=parse_flags)
