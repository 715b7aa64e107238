"""Stopping a training run by signal: SIGTERM/Ctrl-C finish the step, save, then stop.

`StopFlag` turns the signals into a flag the loop checks between steps; `TrainingInterrupted`
is what `run.train` raises afterwards, so that `python -m avs_jax.main` exits with 128 + the
signal number (143 for SIGTERM) and a scheduler does not take the run as finished. On several
hosts the signal reaches each at its own step: `agreed_signal` has them stop together.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

# On several hosts, how often (in steps) they tell each other whether one was signalled: each
# exchange waits for the steps already dispatched, so not every step.
STOP_SYNC_EVERY = 25


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


def agreed_signal(local: int | None, step: int, every: int = STOP_SYNC_EVERY) -> int | None:
    """The signal on which every process stops after `step`, or None to go on.

    One process: its own flag, at once. Several: a signal reaches each host at its own step, and
    a host that stops alone leaves the others waiting for it in the next step's collectives (and
    itself in the checkpoint's barrier). So the hosts exchange their flags every `every` steps
    and all stop at that step when any was signalled.
    """
    if jax.process_count() == 1:
        return local
    if step % every != 0:
        return None
    flags = np.asarray(multihost_utils.process_allgather(np.int32(local or 0)))
    raised = flags[flags > 0]
    return int(raised.max()) if raised.size else None
