"""One process at a time in a workdir: an advisory lock file naming its holder.

Two runs in one workdir destroy each other's work: orbax deletes checkpoints it did not write
(an unfinished save of the other run looks like a leftover of a crash), and both append to
`metrics.jsonl`. Every mode therefore holds `workdir/.lock` while it runs:

* the lock is `flock(2)` on that file, so the kernel releases it when the holder exits in any
  way (kill -9, out of memory, a power cut of the machine): a dead holder never blocks a rerun;
* the file holds JSON `{"pid", "host", "since", "command"}` of the holder, for the message a
  second run gets, and is emptied on a clean exit. Content found by a process that did get the
  lock is a holder that died without releasing it: said in the log, then taken over.

Several hosts of one training run share the workdir: only process 0 takes the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

from absl import logging

from avs_jax.errors import InputError

LOCK_NAME = ".lock"


class WorkdirLockedError(InputError, RuntimeError):
    """Another running process holds the workdir."""


def _read_holder(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536).decode("utf-8", "replace").strip()
    if not raw:
        return None
    try:
        holder = json.loads(raw)
    except ValueError:
        return {"unreadable": raw[:200]}
    return holder if isinstance(holder, dict) else {"unreadable": raw[:200]}


def _describe(holder: dict | None) -> str:
    if not holder or "unreadable" in holder:
        return "a process that left no readable record"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')} "
        f"({holder.get('command')})"
    )


@contextlib.contextmanager
def workdir_lock(workdir: str, enabled: bool = True) -> Iterator[None]:
    """Holds `workdir/.lock` for the body; raises WorkdirLockedError naming the holder if taken.

    enabled=False (processes other than 0 of a multi-host run) takes no lock.
    """
    if not enabled:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirLockedError(
                f"{os.path.abspath(workdir)} is in use by {_describe(_read_holder(fd))} "
                f"(lock file {path}): wait for that run to end or stop it, or use another "
                "--workdir"
            ) from None
        stale = _read_holder(fd)
        if stale is not None:
            other_host = stale.get("host") not in (None, socket.gethostname())
            logging.warning(
                "%s: taking over the lock of %s, which ended without releasing it%s",
                workdir,
                _describe(stale),
                " (another host: if it still runs, this filesystem does not share locks between "
                "hosts; stop one of the two)"
                if other_host
                else "",
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves no holder to report
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
