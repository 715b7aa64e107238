"""Stopping a training run by signal: SIGTERM/Ctrl-C finish the step, save, then stop.

`StopFlag` turns the signals into a flag the loop checks between steps; `TrainingInterrupted`
is what `run.train` raises afterwards, so that `python -m avs_jax.main` exits with 128 + the
signal number (143 for SIGTERM) and a scheduler does not take the run as finished.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

from absl import logging


class TrainingInterrupted(Exception):
    """Training stopped at a signal (SIGTERM, Ctrl-C) after saving a checkpoint.

    Not a failure of the input: `python -m avs_jax.main` exits with 128 + the signal number (143
    for SIGTERM), as a process killed by it would, so a scheduler does not take the run as done.
    """

    def __init__(self, signum: int, step: int, workdir: str):
        self.signum, self.step, self.workdir = signum, step, workdir
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}, with a checkpoint in "
            f"{workdir}: run the same command again to continue"
        )


def raise_if_interrupted(out: dict, workdir: str) -> None:
    """TrainingInterrupted when `train_and_evaluate`'s result `out` says a signal stopped it."""
    if out["stopped"] == "signal":
        raise TrainingInterrupted(out["signal"], out["step"], workdir)


class StopFlag:
    """Set by SIGTERM / SIGINT; the loop checks it between steps and stops with a checkpoint."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signal = signum
        logging.warning("signal %d: stopping after this step, with a checkpoint", signum)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handler)
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
