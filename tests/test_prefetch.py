"""avs_jax/train/prefetch.py: batches read ahead in a thread, in order, with an exact data position.

The loop's exact resume through the prefetcher is tested end to end in tests/test_train_loop.py
(the toy config keeps the default `prefetch_to_device`)."""

import json
import threading
import time

import grain
import numpy as np
import pytest

from avs_jax.train.prefetch import DevicePrefetcher


def batches(n_examples: int = 20, batch: int = 2):
    """Endless grain iterator of {"x": [batch]} batches of a shuffled range (checkpointable)."""
    ds = grain.MapDataset.source(np.arange(n_examples)).shuffle(seed=3).repeat(None)
    ds = ds.map(lambda i: {"x": np.int64(i)}).batch(batch, drop_remainder=True)
    return iter(ds.to_iter_dataset())


def tagged(batch: dict) -> dict:
    """A stand-in for put_batch: a new dict, marked, so the test sees that `put` ran."""
    return {"x": np.asarray(batch["x"]), "put": True}


def take(it, k):
    return [next(it) for _ in range(k)]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_same_batches_in_the_same_order_as_the_iterator(depth):
    expected = [b["x"] for b in take(batches(), 12)]
    with DevicePrefetcher(batches(), tagged, depth) as pre:
        got = take(pre, 12)
    assert all(b["put"] and n == 2 for b, n in got)
    np.testing.assert_array_equal([b["x"] for b, _ in got], expected)


def test_state_is_that_after_the_last_batch_taken_not_the_ones_read_ahead():
    pre = DevicePrefetcher(batches(), tagged, depth=4)
    take(pre, 5)
    deadline = time.monotonic() + 10
    while pre._queue.qsize() < 4 and time.monotonic() < deadline:  # the thread ran ahead
        time.sleep(0.01)
    assert pre._queue.qsize() == 4
    state = pre.get_state()
    pre.close()
    fresh = batches()
    fresh.set_state(json.loads(state))  # the checkpoint handler's JSON, as grain restores it
    uninterrupted = [b["x"] for b in take(batches(), 8)]
    np.testing.assert_array_equal(next(fresh)["x"], uninterrupted[5])
    # set_state on a prefetcher that has not started reading moves it there too.
    again = DevicePrefetcher(batches(), tagged, depth=2)
    again.set_state(state)
    np.testing.assert_array_equal(next(again)[0]["x"], uninterrupted[5])
    again.close()


def test_a_given_first_batch_comes_first_and_the_state_is_after_it():
    it = batches()
    first = next(it)
    state_after_first = it.get_state()
    pre = DevicePrefetcher(it, tagged, depth=2, first=first)
    assert json.loads(pre.get_state()) == state_after_first
    got = [b["x"] for b, _ in take(pre, 3)]
    pre.close()
    np.testing.assert_array_equal(got, [b["x"] for b in take(batches(), 3)])


class Failing:
    """Yields two batches, then raises the pipeline's error (a bad file, say)."""

    def __init__(self, error: BaseException | None):
        self.n, self.error = 0, error

    def __iter__(self):
        return self

    def __next__(self):
        self.n += 1
        if self.n <= 2:
            return {"x": np.zeros(2)}
        if self.error is None:
            raise StopIteration
        raise self.error


def test_reader_errors_reach_the_loop_with_their_type_and_the_end_ends():
    pre = DevicePrefetcher(Failing(ValueError("bad file x.jpg")), tagged, depth=2)
    take(pre, 2)
    with pytest.raises(ValueError, match="bad file x.jpg"):
        next(pre)
    pre.close()
    pre = DevicePrefetcher(Failing(None), tagged, depth=2)
    take(pre, 2)
    for _ in range(2):  # ended, and stays ended
        with pytest.raises(StopIteration):
            next(pre)
    pre.close()
    with pytest.raises(TypeError, match="no state"):
        pre.get_state()


def test_close_stops_a_reader_blocked_on_a_full_queue():
    pre = DevicePrefetcher(batches(), tagged, depth=1)
    next(pre)
    time.sleep(0.2)  # the thread has filled the queue and waits to put the next batch
    thread = pre._thread
    pre.close()
    assert not thread.is_alive()
    assert "device-prefetch" not in [t.name for t in threading.enumerate()]


def test_close_does_not_wait_forever_on_a_stuck_read():
    release = threading.Event()

    def stuck():
        yield {"x": np.zeros(2)}
        release.wait()  # a read that never returns while the run stops
        yield {"x": np.zeros(2)}

    pre = DevicePrefetcher(stuck(), tagged, depth=2)
    next(pre)
    time.sleep(0.1)  # the thread is inside the stuck read
    t0 = time.monotonic()
    pre.close(timeout_s=0.5)
    assert time.monotonic() - t0 < 5
    release.set()
