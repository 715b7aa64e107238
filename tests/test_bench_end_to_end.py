"""What bench/end_to_end.py relies on: the loop's samples/s per logged window in metrics.jsonl,
the config fields its training command sets, and its arithmetic. No time is asserted (speed
targets live in bench/)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "bench"))  # last: its module names must shadow nothing
import end_to_end  # noqa: E402
import train_toy  # noqa: E402


def test_window_throughput_drops_the_warmup_and_weights_windows_by_their_time():
    records = [
        {"step": 5, "split": "train", "samples_per_s": 1.0},  # the compile
        {"step": 10, "split": "train", "samples_per_s": 40.0},
        {"step": 15, "split": "train", "samples_per_s": 20.0},
        {"step": 15, "split": "eval", "abs_rel": 0.5},
    ]
    out = end_to_end.window_throughput(records, batch=4, warmup_windows=1)
    # 20 + 20 samples in 0.5 + 1.0 s: their time, not the mean of the two rates (30).
    assert out["samples_per_s"] == pytest.approx(40 / 1.5, rel=1e-3)
    assert out["timed_steps"] == 10 and out["windows"] == [1.0, 40.0, 20.0]
    with pytest.raises(ValueError):
        end_to_end.window_throughput(records, batch=4, warmup_windows=3)


def test_the_training_command_sets_fields_that_both_configs_have():
    from avs_jax.config_files import load_config

    for stage, (file, _, _) in end_to_end.STAGES.items():
        for paper in (False, True):
            cmd = end_to_end.train_command(
                stage, paper, Path("root"), Path("run"), Path("tfds"), 4, 10, 5, "bfloat16", 2, True
            )
            config = load_config(Path(file).stem, "" if paper else "tiny")
            overrides = [a[len("--config.") :].split("=")[0] for a in cmd if "--config." in a]
            assert len(overrides) == 11, cmd
            # The stored size is the training size, which the dataset's name then carries.
            h, w = config.data.image_size
            assert f"--config.data.stored_size={h},{w}" in cmd
            for name in overrides:
                node = config
                for key in name.split("."):
                    assert key in node, f"{file}: config.{name}"
                    node = node[key]


def test_the_loop_logs_samples_per_second_for_each_window(tmp_path):
    from avs_jax.train.loop import train_and_evaluate
    from avs_jax.train.metric_writers import read_metrics

    train_and_evaluate(
        train_toy.config(num_epochs=1, log_every=2, eval_every=5),
        str(tmp_path),
        train_toy.ToyTask(),
        train_toy.train_iter,
        None,
    )
    records = read_metrics(str(tmp_path), "train")
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["samples_per_s"] > 0 for r in records)
    out = end_to_end.window_throughput(records, batch=8, warmup_windows=1)
    assert out["timed_steps"] == 2 and out["samples_per_s"] == pytest.approx(
        records[1]["samples_per_s"], rel=1e-6
    )


def test_in_command_alternation_reads_every_other_block_and_splits_windows_by_it():
    import loop_overhead

    class Reader:  # a prefetcher whose n-th read is batch n
        def __init__(self):
            self.reads = 0

        def __next__(self):
            self.reads += 1
            return self.reads

    it = loop_overhead._alternating(Reader, block_steps=2)()
    # Steps 1-2 read, 3-4 reuse step 2's batch, 5-6 read on from where reading stopped.
    assert [next(it) for _ in range(8)] == [1, 2, 2, 2, 3, 4, 4, 4]
    assert it.reads == 4
    # Windows of 2 steps at batch 4 (8 samples): steps 1-2 and 5-6 read, 3-4 and 7-8 did not.
    rates = loop_overhead.alternating_rates([(2, 8.0), (4, 16.0), (6, 4.0), (8, 16.0)], 2, 4)
    assert rates["read"] == pytest.approx(16 / (1.0 + 2.0))  # 16 samples in 1 s + 2 s
    assert rates["none read"] == pytest.approx(16.0)
