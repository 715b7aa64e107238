"""Batches read and put on the devices ahead of the step, by a background thread.

The train loop dispatches a step and returns at once (JAX's asynchronous dispatch), but it
blocks whenever it reads metrics back (every `log_every` steps), saves or validates. Without a
prefetcher the host reads the next batch and copies it to the devices only after such a wait,
while the accelerator idles. `DevicePrefetcher` keeps `depth` batches ready on the devices,
read by a thread of its own: the copy of batch t+1 overlaps step t.

The data position stays exact: with a grain iterator, the state recorded after each batch
travels with it, and `get_state` gives the state after the last batch the loop *took* (not the
ones waiting in the queue), so a checkpoint resumes at the next batch the loop would have run.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any, Callable, Iterator

_END = object()  # the iterator ended


class _Failed:
    """An exception of the reading thread, raised again in the loop's thread."""

    def __init__(self, error: BaseException):
        self.error = error


class DevicePrefetcher:
    """Iterator of (device batch, host batch size) over ``iterator``'s host batches.

    Args:
      iterator: host batches (dict of numpy arrays); a grain iterator (get_state / set_state) is
        checkpointed through this object (`get_state` / `set_state`).
      put: host batch -> device batch (the train loop's `put_batch` over its mesh).
      depth: batches kept ready on the devices; 0 reads and puts each batch when it is asked
        for, in the caller's thread (no thread, nothing ahead).
      first: a batch already taken from ``iterator`` (and its device copy, ``first_device``),
        given back first; ``iterator``'s state must be the one after it.
    """

    def __init__(
        self,
        iterator: Iterator[dict],
        put: Callable[[dict], dict],
        depth: int,
        first: dict | None = None,
        first_device: dict | None = None,
    ):
        self._it = iterator
        self._put = put
        self._depth = max(int(depth), 0)
        self._checkpointable = hasattr(iterator, "get_state") and hasattr(iterator, "set_state")
        self._state = self._inner_state()
        self._first = None
        if first is not None:
            self._first = (first_device or put(first), _batch_size(first), self._state)
        self._queue: queue.Queue = queue.Queue(maxsize=max(self._depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- iteration ------------------------------------------------------------------------------

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> tuple[dict, int]:
        if self._first is not None:
            item, self._first = self._first, None
        elif self._depth == 0:
            item = self._read()  # StopIteration passes through
        else:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._produce, name="device-prefetch", daemon=True
                )
                self._thread.start()
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)  # asked again, it ends again
                raise StopIteration
            if isinstance(item, _Failed):
                raise item.error
        batch, n, self._state = item
        return batch, n

    def _read(self) -> tuple[dict, int, Any]:
        host = next(self._it)
        return self._put(host), _batch_size(host), self._inner_state()

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._read()
            except StopIteration:
                item = _END
            except BaseException as e:  # noqa: BLE001  (raised again in the loop's thread)
                item = _Failed(e)
            while not self._stop.is_set():  # the queue may stay full while the loop saves
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item is _END or isinstance(item, _Failed):
                return

    def close(self, timeout_s: float = 30.0) -> None:
        """Stops the reading thread (the batches it holds are dropped). A read that is still
        running after ``timeout_s`` (a stuck input pipeline) is left to its daemon thread, so
        that a stopping run is not held up by its input."""
        self._stop.set()
        if self._thread is not None:
            deadline = time.monotonic() + timeout_s
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:  # unblock a put; the thread checks the flag within 0.1 s
                    self._queue.get(timeout=0.1)
                except queue.Empty:
                    pass
            self._thread = None

    def __enter__(self) -> DevicePrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- checkpointing (what grain's checkpoint handler asks of a non-grain iterator) -----------

    @property
    def checkpointable(self) -> bool:
        """Whether the wrapped iterator's position can be saved (a grain iterator's can)."""
        return self._checkpointable

    def _inner_state(self) -> Any:
        return self._it.get_state() if self._checkpointable else None

    def get_state(self) -> bytes:
        """The wrapped iterator's state after the last batch returned, as JSON bytes."""
        if not self._checkpointable:
            raise TypeError(f"{type(self._it).__name__} has no state to save")
        state = self._state
        return state if isinstance(state, bytes) else json.dumps(state, indent=4).encode()

    def set_state(self, state: bytes) -> None:
        """Moves the wrapped iterator to ``state`` (from `get_state`); only before iterating."""
        if self._thread is not None:
            raise RuntimeError("set_state on a DevicePrefetcher that is already reading ahead")
        inner = self._it.get_state()
        self._it.set_state(state if isinstance(inner, bytes) else json.loads(state))
        self._state, self._first = self._inner_state(), None


def _batch_size(batch: dict) -> int:
    return len(next(iter(batch.values())))
