"""Paper defaults of the train core's config sections (train, checkpoint, distributed, init_from).

`default_train_config(stage)` returns a ConfigDict with the sections that the train core reads;
an experiment config merges it (`config.update(default_train_config("avsnet"))`) and overrides
what it changes. The train loop itself never looks at the stage: every difference is a value here.
"""

from __future__ import annotations

import ml_collections

from avs_jax.errors import BadInputError

STAGES = ("avsnet", "monodepth2", "litemono")


def default_train_config(stage: str) -> ml_collections.ConfigDict:
    """Config sections `train`, `checkpoint`, `distributed`, `init_from` with `stage`'s paper values.

    stage: "avsnet" (stage 1, ZoeDepth recipe), "monodepth2" or "litemono" (relative depth).
    """
    if stage not in STAGES:
        raise BadInputError(f"unknown stage {stage!r}; expected one of {STAGES}")
    c = ml_collections.ConfigDict()

    t = c.train = ml_collections.ConfigDict()
    t.seed = 0
    # Length: num_steps > 0 wins; else num_epochs * steps_per_epoch (steps_per_epoch from the
    # data pipeline: examples // global batch).
    t.num_steps = -1
    t.steps_per_epoch = -1
    t.num_epochs = 5  # ZoeDepth default (docs/reference.md)
    # Optimizer (see avs_jax/train/optimizer.py).
    t.optimizer = "adamw_onecycle"
    t.learning_rate = 1.61e-4  # ZoeDepth max_lr
    t.weight_decay = 0.01  # ZoeDepth AdamW wd
    t.b1 = 0.9  # torch Adam default; replaced by the OneCycle beta1 cycle when cycle_momentum
    t.b2 = 0.999  # torch Adam default
    t.eps = 1e-8  # torch Adam default
    t.grad_clip_norm = 0.1  # ZoeDepth clip_grad (global norm); <= 0 disables
    t.lr_multipliers = {
        "encoder": 0.1
    }  # ZoeDepth encoder_lr_factor 10: pretrained encoder at lr/10
    t.onecycle = ml_collections.ConfigDict(
        dict(
            pct_start=0.7,  # ZoeDepth
            div_factor=1.0,  # ZoeDepth: start at max_lr
            final_div_factor=1e4,  # ZoeDepth
            cycle_momentum=True,  # ZoeDepth
            base_momentum=0.85,  # ZoeDepth / torch default
            max_momentum=0.95,  # ZoeDepth / torch default
        )
    )
    t.lr_decay_epochs = 15  # Monodepth2 scheduler_step_size (used by the *_step recipes)
    t.lr_decay_factor = 0.1  # Monodepth2 StepLR gamma
    # Precision: params and optimizer state stay float32; the float inputs listed in
    # cast_batch_keys are cast to compute_dtype before the task sees them; tasks build their
    # models with this dtype and compute their losses in float32.
    t.compute_dtype = "float32"  # or "bfloat16"
    # Network inputs only: the photometric loss reads the un-augmented "frames" in float32.
    t.cast_batch_keys = ("image", "echo", "frames_aug")
    # Host-side cadence.
    t.log_every = 50  # steps between host reads of the metrics (TensorBoard, metrics.jsonl, tqdm)
    t.eval_every = -1  # steps between validations; <= 0: at the end of every epoch
    t.checkpoint_every = -1  # steps between extra checkpoints; <= 0: only after validations
    t.stop_at_step = -1  # > 0: stop (with a checkpoint) once this step is reached, as a preemption
    t.progress_bar = True
    # Batches copied to the devices ahead of the step by a reading thread (0: read each batch
    # when the step needs it): the copy overlaps the step, and the loop's metric reads, checkpoint
    # saves and validations do not leave the accelerator waiting for input afterwards.
    t.prefetch_to_device = 2
    # Validation samples shown in TensorBoard at each validation (0: none); few, so that
    # rendering them stays milliseconds and the event files small (Monodepth2 logs 4).
    t.num_summary_images = 4

    k = c.checkpoint = ml_collections.ConfigDict()
    k.keep = 2  # latest checkpoints kept (plus the best one)
    k.best_metric = (
        "abs_rel"  # validation metric that ranks checkpoints (docs/reference.md, "Evaluation")
    )
    k.best_mode = "min"  # "min" or "max"
    k.async_save = True

    d = c.distributed = ml_collections.ConfigDict()
    # multi_host: call jax.distributed.initialize() before anything touches devices. A field
    # left empty is read from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID when
    # set, else JAX detects the cluster itself (SLURM, Open MPI, TPU pods).
    d.multi_host = False
    d.coordinator_address = ""  # "host:port" of process 0
    d.num_processes = -1
    d.process_id = -1

    # Pretrained weights: an orbax checkpoint directory (tree {"params": ..., ["batch_stats": ...]}
    # or a bare params tree) merged into the model's variables under init_from_target
    # ("/"-separated path, "" = root) wherever the paths and shapes match.
    c.init_from = ""
    c.init_from_target = ""

    if stage in ("monodepth2", "litemono"):
        t.num_epochs = 20  # Monodepth2 default
        t.learning_rate = 1e-4  # Monodepth2 default
        t.grad_clip_norm = -1.0  # Monodepth2 does not clip
        t.lr_multipliers = {}  # Monodepth2: one learning rate for every network
        t.b1 = 0.9
        t.weight_decay = 0.0
        t.optimizer = "adam_step"
        k.best_metric = "abs_rel"
        if stage == "litemono":
            # Lite-Mono: AdamW, wd 1e-2 (docs/reference.md). Its own cosine schedule is not copied;
            # the Monodepth2 step decay keeps the two relative models comparable.
            t.optimizer = "adamw_step"
            t.weight_decay = 1e-2
    return c
