"""`evaluate()` on one stubbed batch of two samples ('loc/1', 'loc/2'): no checkpoint and no
dataset, for tests of what it does with the maps (ground truth 3 m everywhere, [2, 4, 6])."""

from typing import Callable

import ml_collections
import numpy as np

from avs_jax.evaluation import evaluate as evaluate_mod

GT_M = 3.0


def stub_evaluation(monkeypatch, mp_fn: Callable[[dict], np.ndarray], **batch_extra) -> None:
    """evaluate()'s stage-1 model is `mp_fn` (batch -> M_p [2, 4, 6]); its one batch holds
    `batch_extra` as well."""
    predictor = evaluate_mod.Predictor("rgb_echoes", mp_fn, (4, 6))
    monkeypatch.setattr(
        evaluate_mod, "_stage1_predictor", lambda variant, run_dir: (predictor, None, None, None)
    )
    monkeypatch.setattr(evaluate_mod.datasets, "open_dataset", lambda data: None)
    monkeypatch.setattr(evaluate_mod.datasets, "split_size", lambda builder, split: 2)
    batch = {
        "valid_example": np.ones(2, bool),
        "sample_id": np.array(["loc/1", "loc/2"]),
        "depth_full": np.full((2, 4, 6), GT_M, np.float32),
        "image": np.zeros((2, 4, 6, 3), np.float32),
        "echo": np.zeros((2, 4, 6, 2), np.float32),
        **batch_extra,
    }
    monkeypatch.setattr(
        evaluate_mod.input_pipeline,
        "create_eval_iterator",
        lambda builder, cfg, split: iter([batch]),
    )


def stub_config(run_dir: str, **changes) -> ml_collections.ConfigDict:
    """An evaluation config of the stubbed `rgb_echoes` run `run_dir` on BV2, no figures."""
    c = ml_collections.ConfigDict(
        {
            "stage1": {"rgb_echoes": run_dir, "rgb": "", "echoes": ""},
            "relative": {},
            "datasets": {"bv2": {"name": "bv2", "data_dir": "", "max_depth": 30.0}},
            "data_dir": "data",
            "table2_datasets": (),
            "min_depth": 1e-3,
            "batch_size": 2,
            "external": {"predictions": "", "kind": "disparity", "name": "external"},
            "allow_missing": False,
            "export": False,
            "figures": {"num_per_dataset": 0},
            "gradcam": {"num_samples": 0},
        }
    )
    c.update(changes)
    return c
