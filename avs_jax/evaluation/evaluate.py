"""`mode="evaluate"`: the paper's Tables 1 and 2 from training checkpoints, figures, Grad-CAM.

For each dataset of `config.datasets` (test split, ground truth at its native resolution):

* Table 1: the pseudo-dense metric depth M_p of each stage-1 checkpoint in `config.stage1`
  (`rgb_echoes`, `rgb`, optional `echoes`), with `config.canonical_camera.enabled` scaled per
  image by the test camera's focal length over training's (`avs_jax/canonical_camera.py`);
* Table 2 (datasets in `config.table2_datasets`): every relative model of `config.relative`,
  and the `.npy` predictions of an outside model (`config.external`), scaled per image by each
  stage-1 model's M_p with median (eq. 3) and mean-std scaling, plus the unscaled row and the
  ground-truth-median oracle.

Writes `tables.json`, `tables.md`, `figures/*.png` and `report.html` (all of them on one page)
into the workdir; with `config.export`, also `export/scales.csv` (per-sample scale factors) and
`export/<model>/<source>/<id>.npy` (metric depth maps) for use in other code.
"""

from __future__ import annotations

import csv
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from avs_jax import canonical_camera
from avs_jax.data import datasets, input_pipeline, transforms
from avs_jax.errors import BadInputError, MissingInputError
from avs_jax.evaluation import external, figures, gradcam, report, tables
from avs_jax.evaluation.checkpoints import load_run
from avs_jax.evaluation.scaled_eval import ScalingEvaluator
from avs_jax.metrics import resize_to, valid_mask
from avs_jax.models.layers import resize_bilinear
from avs_jax.scaling import apply_scaling, scale_factor_median, to_depth
from avs_jax.train.relative_task import RelativeDepthTask

STAGE1_VARIANTS = ("rgb_echoes", "rgb", "echoes")
ECHO_VARIANTS = ("rgb_echoes", "echoes")


class Predictor:
    """A loaded model as a jitted function of an evaluation batch -> `[B, h, w]`."""

    def __init__(
        self,
        name: str,
        fn: Callable[[dict], jax.Array],
        image_size: tuple[int, int],
        kind: str = "depth",
        stft: dict | None = None,
    ):
        self.name, self.fn, self.kind = name, fn, kind
        self.image_size = tuple(int(s) for s in image_size)
        self.stft = stft


def _stage1_predictor(variant: str, run_dir: str) -> tuple[Predictor, Any, dict, Any]:
    task, variables, cfg = load_run(run_dir, "avsnet", variant)

    @jax.jit
    def fn(image, echo):
        return task.predict(variables, image, echo)[..., 0]

    stft = dict(cfg.data.stft)
    # The echo settings of training (BV2's cut to its max depth) are used on every test set.
    stft["cut_to_max_depth"] = True
    stft["max_depth"] = float(stft.get("max_depth") or cfg.data.max_depth)
    pred = Predictor(variant, lambda b: fn(b["image"], b["echo"]), cfg.data.image_size, stft=stft)
    return pred, task, variables, cfg


def relative_predict_fn(task: RelativeDepthTask, variables: dict) -> Callable[[dict], jax.Array]:
    """Batch `{"image" [B, h, w, 3], "out_size" (H, W)}` → relative depth `[B, H, W]`.

    The disparity is resized to the ground truth's size and then inverted, the order of
    Monodepth2's evaluation (resizing the depth instead weights near and far pixels otherwise).
    """
    fn = jax.jit(functools.partial(task.predict_relative, variables), static_argnames="out_size")
    return lambda b: fn(b["image"], out_size=tuple(b["out_size"]))


def _relative_predictor(name: str, run_dir: str, checkpoint: str = "best") -> Predictor:
    step = None if checkpoint == "latest" else checkpoint
    task, variables, cfg = load_run(run_dir, "relative", step=step)
    return Predictor(name, relative_predict_fn(task, variables), cfg.data.image_size)


def _eval_data_config(
    base: ml_collections.ConfigDict, image_size, stft: dict | None, batch_size: int
) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(base.to_dict())
    cfg.image_size = tuple(image_size)
    cfg.batch_size = batch_size
    cfg.augment = False
    if stft is not None:
        cfg.stft.update(stft)
    return cfg


def dataset_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """`config.datasets[name]` with its data_dir resolved ("" = the shared `config.data_dir`)."""
    data = ml_collections.ConfigDict(config.datasets[name].to_dict())
    data.data_dir = data.data_dir or config.data_dir
    return data


def _check_datasets(config, stage1: dict[str, Predictor]) -> None:
    for name, data in config.datasets.items():
        if data.name == "bv1_triples" and any(v in ECHO_VARIANTS for v in stage1):
            raise BadInputError(
                f"config.datasets.{name}: batvision/bv1_triples holds frames without echoes; the "
                f"echo models {[v for v in stage1 if v in ECHO_VARIANTS]} need a dataset with "
                "audio (bv1 or bv2)"
            )


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluates every configured checkpoint; writes tables (and figures) into `workdir`."""
    stage1, relative, loaded = {}, {}, {}
    for variant in STAGE1_VARIANTS:
        run_dir = config.stage1.get(variant)
        if run_dir:
            stage1[variant], *loaded[variant] = _stage1_predictor(variant, run_dir)
    for name, run_dir in config.relative.items():
        if run_dir:
            relative[name] = _relative_predictor(
                name, run_dir, config.get("relative_checkpoint", "best")
            )
    if not stage1 and not relative:
        raise BadInputError("config.stage1 and config.relative name no checkpoint to evaluate")
    _check_datasets(config, stage1)
    train_focal = canonical_camera.train_focals(config, loaded)
    ext = config.external
    if ext.predictions and not os.path.isdir(ext.predictions):
        raise MissingInputError(f"config.external.predictions: no such folder {ext.predictions}")
    # Where each model came from, for the error a non-finite or non-positive map raises.
    origins = {
        **{v: config.stage1[v] for v in stage1},
        **{n: config.relative[n] for n in relative},
        **({ext.name: ext.predictions} if ext.predictions else {}),
    }

    table1, table1_oracle, table2, missing = {}, {}, {}, []
    figdir = os.path.join(workdir, "figures")
    export_rows: list[list[str]] = []
    for ds_name, data in config.datasets.items():
        data = dataset_config(config, ds_name)
        builder = datasets.open_dataset(data)
        n_test = datasets.split_size(builder, "test")
        if n_test == 0:
            raise BadInputError(f"batvision/{data.name} in {data.data_dir} has no test split")
        with_table2 = ds_name in config.table2_datasets
        models = list(stage1.values()) + (list(relative.values()) if with_table2 else [])
        # One evaluation stream per input resolution/echo setting, all in the same order.
        streams = {}
        for p in models:
            key = (p.image_size, tuple(sorted((p.stft or {}).items())))
            streams.setdefault(
                key, _eval_data_config(data, p.image_size, p.stft, config.batch_size)
            )
        keys = list(streams)
        iters = [input_pipeline.create_eval_iterator(builder, streams[k], "test") for k in keys]
        evaluator = ScalingEvaluator(config.min_depth, data.max_depth, origins=origins)
        shown = 0
        bar = tqdm.tqdm(total=n_test, desc=f"evaluate {ds_name}", unit="img")
        for batches in zip(*iters):
            base = batches[0]
            by_key = dict(zip(keys, batches))
            real = np.asarray(base["valid_example"], bool)
            ids = [str(s) for s in base["sample_id"]]
            gt = np.asarray(base["depth_full"], np.float32)

            def inputs(p):
                b = by_key[(p.image_size, tuple(sorted((p.stft or {}).items())))]
                return {
                    "image": jnp.asarray(b["image"]),
                    "echo": jnp.asarray(b["echo"]),
                    "out_size": gt.shape[1:],
                }

            mp = {v: p.fn(inputs(p)) for v, p in stage1.items()}
            mp = canonical_camera.apply(mp, train_focal, base.get("focal"), real, ids)
            rel = {m: (p.fn(inputs(p)), p.kind) for m, p in relative.items()} if with_table2 else {}
            # Table 2 compares its rows on the same images: a sample without an external
            # prediction (allow_missing) leaves all of them, but stays in Table 1.
            real2 = real
            if with_table2 and ext.predictions:
                ext_batch, ok = external.load_batch(
                    ext.predictions, ids, real, gt.shape[1:], config.allow_missing, missing
                )
                rel[ext.name] = (ext_batch, ext.kind)
                real2 = real & ok
            evaluator.update(gt, mp, rel, real, real2, sample_ids=ids)
            if with_table2 and config.export:
                export_rows += _export(workdir, ds_name, ids, real2, gt, mp, rel, data.max_depth)
            if shown < config.figures.num_per_dataset and rel:
                shown += _depth_figures(
                    figdir,
                    ds_name,
                    ids,
                    real2,
                    base,
                    gt,
                    mp,
                    rel,
                    data.max_depth,
                    config.figures.num_per_dataset - shown,
                )
            bar.update(int(np.asarray(base["valid_example"]).sum()))
        bar.close()
        table1[ds_name] = evaluator.table1()
        if table1[ds_name]:  # references of the M_p above (none without a stage-1 model)
            table1_oracle[ds_name] = evaluator.table1_oracle()
        if with_table2:
            table2[ds_name] = evaluator.table2()
    json_path, md_path = tables.write_tables(workdir, table1, table2, table1_oracle, train_focal)
    if config.export and export_rows:
        _write_scales(workdir, export_rows)
    if missing:
        logging.warning(
            "%d sample(s) had no external prediction and were left out: %s",
            len(missing),
            ", ".join(missing[:20]),
        )
    cams = []
    if config.gradcam.num_samples and {"rgb_echoes", "rgb"} <= set(stage1):
        cams = _gradcam_figures(config, figdir, loaded, stage1, train_focal)
    # Last, so that it shows every figure; the quickstart rewrites it with its claims.
    report_path = report.write_report(
        workdir, table1, table2, runs=origins, oracle=table1_oracle, train_focal=train_focal
    )
    logging.info("wrote %s, %s and %s", json_path, md_path, report_path)
    out = {"table1": table1, "table1_oracle": table1_oracle, "table2": table2}
    return {**out, "missing": missing, "gradcam": cams}


# Jitted: run op by op, the masked medians took ~2.5 s per batch of 8 at 64x128 on a 2-core CPU
# (5 ms compiled), and exporting BV1 test took 13 min instead of the evaluation's ~1.
@functools.partial(jax.jit, static_argnums=(3, 4))
def _scaled_maps(gt, mp, r, kind, max_depth):
    """Full-resolution metric depth of one relative prediction: "no" and median per source."""
    size = gt.shape[1:]
    valid = valid_mask(jnp.asarray(gt), max_depth)
    r_full = resize_to(to_depth(jnp.asarray(r, jnp.float32), kind), size)
    maps = {"no": r_full}
    factors = {}
    for v, m in mp.items():
        m_full = resize_to(jnp.asarray(m), size)
        factors[v] = scale_factor_median(r_full, m_full, valid)
        maps[v] = apply_scaling(r_full, "median", valid, m_full)
    return maps, factors


def _export(workdir, ds_name, ids, real, gt, mp, rel, max_depth) -> list[list[str]]:
    rows = []
    for model, (r, kind) in rel.items():
        maps, factors = _scaled_maps(gt, mp, r, kind, max_depth)
        for source, depth in maps.items():
            out = os.path.join(workdir, "export", ds_name, model, source)
            os.makedirs(out, exist_ok=True)
            depth = np.asarray(depth)
            for i, sid in enumerate(ids):
                if real[i]:
                    np.save(os.path.join(out, sid.replace("/", "__") + ".npy"), depth[i])
                    if source in factors:
                        rows.append(
                            [
                                ds_name,
                                sid,
                                model,
                                source,
                                "median",
                                f"{float(factors[source][i]):.6g}",
                            ]
                        )
    return rows


def _write_scales(workdir, rows) -> None:
    path = os.path.join(workdir, "export", "scales.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "sample_id", "model", "source", "method", "scale"])
        w.writerows(rows)


SOURCE_TITLES = {"no": "No scaling", "rgb": "RGB scaling", "rgb_echoes": "RGB-Echoes scaling"}


def _depth_figures(figdir, ds_name, ids, real, base, gt, mp, rel, max_depth, budget) -> int:
    model, (r, kind) = next(iter(rel.items()))
    maps, _ = _scaled_maps(gt, mp, r, kind, max_depth)
    maps = {SOURCE_TITLES.get(k, k): np.asarray(v) for k, v in maps.items()}
    errors = tuple(t for t in ("RGB scaling", "RGB-Echoes scaling") if t in maps)
    rgb_full = np.asarray(resize_bilinear(jnp.asarray(base["image"]), gt.shape[1:]))
    n = 0
    for i, sid in enumerate(ids):
        if n >= budget or not real[i]:
            continue
        path = figures.figure_path(figdir, f"depth_{ds_name}_{model}", sid)
        figures.depth_panel(
            path,
            f"{ds_name} {sid} ({model})",
            rgb_full[i],
            gt[i],
            {k: v[i] for k, v in maps.items()},
            max_depth,
            errors,
        )
        n += 1
    return n


def _gradcam_figures(config, figdir, loaded, stage1, train_focal) -> list[str]:
    """Fig. 6: Grad-CAM on the STFT and on RGB, for the first test samples of the first dataset;
    its M_p as the tables scored them (the canonical camera's factor; the maps do not change)."""
    ds_name = next(iter(config.datasets))
    data = dataset_config(config, ds_name)
    echo_task, echo_vars, echo_cfg = loaded["rgb_echoes"]
    rgb_task, rgb_vars, _ = loaded["rgb"]
    p = stage1["rgb_echoes"]
    builder = datasets.open_dataset(data)
    n = config.gradcam.num_samples
    # A batch of the evaluation's size: its compiled predictors then serve these figures too
    # (each new batch shape costs a compile, ~7 s for the tiny AVS-Net on a 2-core CPU).
    cfg = _eval_data_config(data, p.image_size, p.stft, max(n, config.batch_size))
    batch = next(iter(input_pipeline.create_eval_iterator(builder, cfg, "test")))
    full = {"image": jnp.asarray(batch["image"]), "echo": jnp.asarray(batch["echo"])}
    mp = {v: stage1[v].fn(full) for v in ("rgb_echoes", "rgb")}
    ids = [str(s) for s in batch["sample_id"]]
    mp = canonical_camera.apply(mp, train_focal, batch.get("focal"), batch["valid_example"], ids)
    d_echo, d_rgb = (np.asarray(mp[v])[:n] for v in ("rgb_echoes", "rgb"))
    image, echo = full["image"][:n], full["echo"][:n]
    # Raw STFT (before the resize to the image size) for the time axis in seconds.
    hop_s = cfg.stft.hop_length / cfg.stft.sample_rate
    n_cols = 1 + int(2 * cfg.stft.max_depth / 340.0 * cfg.stft.sample_rate) // cfg.stft.hop_length
    objective = lambda out: out["metric_depth"].mean(axis=(1, 2, 3))  # noqa: E731
    method = config.gradcam.method
    cams_e = gradcam.grad_cams(
        echo_task.model.apply,
        echo_vars,
        ["echo_features", "visual_features"],
        objective,
        image,
        echo,
        train=False,
        method=method,
        out_sizes={"echo_features": (echo.shape[1], n_cols), "visual_features": image.shape[1:3]},
    )
    cam_stft, cam_rgb_e = cams_e["echo_features"], cams_e["visual_features"]
    cam_rgb = gradcam.grad_cam(
        rgb_task.model.apply,
        rgb_vars,
        "visual_features",
        objective,
        image,
        None,
        train=False,
        method=method,
        out_size=image.shape[1:3],
    )
    stft_imgs = np.asarray(resize_to(echo[..., 0], (echo.shape[1], n_cols)))
    paths = []
    for i, sid in enumerate(batch["sample_id"][:n]):
        if not batch["valid_example"][i]:
            continue
        stft_img = stft_imgs[i]
        gt = transforms.resize_nearest(np.asarray(batch["depth_full"][i]), image.shape[1:3])
        path = figures.figure_path(figdir, f"gradcam_{ds_name}", str(sid))
        paths.append(
            figures.gradcam_panel(
                path,
                f"{ds_name} {sid}",
                np.asarray(image[i]),
                gt,
                d_echo[i],
                d_rgb[i],
                stft_img,
                np.asarray(cam_stft[i]),
                np.asarray(cam_rgb_e[i]),
                np.asarray(cam_rgb[i]),
                hop_s,
                data.max_depth,
                nyquist_khz=cfg.stft.sample_rate / 2000,
            )
        )
    return paths
