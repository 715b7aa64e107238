"""Checkpoint-based evaluation: the paper's Tables 1 and 2, figures and Grad-CAM (Sec. 4).

  python -m avs_jax.main --config=configs/evaluate.py --workdir=runs/eval \
      --config.stage1.rgb_echoes=runs/avsnet --config.stage1.rgb=runs/avsnet_rgb \
      --config.relative.monodepth2=runs/monodepth2 --config.data_dir=/data/tfds

`:export` also writes the per-sample scale factors and metric depth maps (workdir/export/).
An outside model's relative predictions join Table 2 with
`--config.external.predictions=DIR --config.external.kind=disparity` (one .npy per test sample id).
"""

import ml_collections

from avs_jax.data.config import default_data_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "export"):
        raise ValueError(f"configs/evaluate.py: unknown argument {arg!r}; use '' or 'export'")
    c = ml_collections.ConfigDict()
    c.mode = "evaluate"
    # Training workdirs of the stage-1 variants ("" = not evaluated).
    c.stage1 = ml_collections.ConfigDict({"rgb_echoes": "", "rgb": "", "echoes": ""})
    # Training workdirs of the relative depth models, by the name shown in Table 2.
    c.relative = ml_collections.ConfigDict({"monodepth2": "", "litemono": ""})
    # Which checkpoint of a relative run: "best" (lowest validation photometric loss) or
    # "latest" (what Monodepth2 evaluates: its final weights).
    c.relative_checkpoint = "best"
    c.data_dir = "data/tfds"  # TFDS data dir holding batvision/bv2 and batvision/bv1
    c.datasets = ml_collections.ConfigDict()
    for name in ("bv2", "bv1"):
        data = default_data_config(name)  # test caps: 30 m BV2, 12 m BV1 (paper footnote 5)
        # "" = config.data_dir. Not a reference to it: overriding one dataset's data_dir would
        # then move the other dataset (and config.data_dir) too.
        data.data_dir = ""
        data.num_workers = 0
        c.datasets[name] = data
    c.table2_datasets = ("bv1",)  # the paper's Table 2 is on BV1 test
    # Off: the paper's protocol (Table 1's BV1 test is zero-shot, as recorded). On: each M_p ×
    # the test camera's focal length / training's (Metric3D's canonical camera), for a camera
    # other than training's (avs_jax/canonical_camera.py).
    c.canonical_camera = ml_collections.ConfigDict()
    c.canonical_camera.enabled = False
    # Training's focal length as a fraction of the image, sqrt(fx/W * fy/H), for every run; 0:
    # each run's own (its camera.json, else its training split's stored intrinsics).
    c.canonical_camera.train_focal = 0.0
    c.min_depth = 1e-3  # predictions are clipped to [min_depth, max_depth] (ZoeDepth eval)
    c.batch_size = 8
    c.external = ml_collections.ConfigDict()
    c.external.predictions = ""  # folder of <sample_id>.npy relative predictions
    c.external.kind = "disparity"  # or "depth"
    c.external.name = "external"  # its name in Table 2
    c.allow_missing = False  # True: evaluate the samples that have an external prediction
    c.export = arg == "export"
    c.figures = ml_collections.ConfigDict()
    c.figures.num_per_dataset = 4  # Fig. 5-like panels per dataset
    c.gradcam = ml_collections.ConfigDict()
    c.gradcam.num_samples = 2  # Fig. 6-like panels (needs the rgb_echoes and rgb checkpoints)
    # HiResCAM keeps the gradient's position (see avs_jax/evaluation/gradcam.py); "gradcam" is
    # the paper's Grad-CAM.
    c.gradcam.method = "hirescam"
    return c
