"""The train core shared by both training stages, and the tasks of each stage.

One core trains both AVS-Net (stage 1, supervised SILog on BV2) and the relative depth model
(Monodepth2 / the light variant, self-supervised on BV1 triples). A stage plugs in by supplying a
**Task**, its input pipeline and a config; the core never branches on the stage.

Modules (one idea each)
-----------------------
- `defaults.py`: `default_train_config(stage)`: the config sections the core reads, with paper
  values and their sources.
- `optimizer.py`: `create_optimizer(config.train, num_steps, param_labels, steps_per_epoch)`,
  `create_learning_rate_fn(...)`: AdamW + torch-OneCycle (lr and beta1), Adam/AdamW + step decay,
  global grad-norm clipping, per-label learning-rate multipliers.
- `state.py`: `TrainState` (step, params, model_state, opt_state, rng), `init_variables`,
  `create_train_state`, the mesh shardings.
- `step.py`: the pure `train_step(task, tx, state, batch, rng, ...)` / `eval_step`, and
  `make_train_step` / `make_eval_step`: compiled once with `jax.jit` over the ("data",) mesh,
  batch `P("data")`, state `P()`, state donated; `put_batch` builds the global batch arrays.
- `checkpointing.py`: `Checkpointer` (orbax CheckpointManager, Composite of state / grain
  iterator / JSON meta, async, latest N + best; resume past unreadable checkpoints),
  `restore_variables` (for evaluation).
- `pretrained.py`: `load_pretrained` (config.init_from) into a fresh run's variables.
- `distributed.py`: `jax.distributed.initialize()` for several hosts.
- `interrupts.py`: SIGTERM / Ctrl-C as a flag the loop checks; `TrainingInterrupted`.
- `metric_writers.py`: TensorBoard events (tensorboardX) and `metrics.jsonl`.
- `summaries.py`: the TensorBoard images of a few fixed validation samples at each validation.
- `loop.py`: `train_and_evaluate(config, workdir, task, train_iter_fn, eval_iter_fn)`.
- `tasks.py`: the `Task` protocol and `make_task(config)`; `avsnet_task.py` (stage 1),
  `relative_task.py` (the relative stage) and `depth_pretext_task.py` (the relative DepthNet's
  pretraining on depth up to scale) implement it; `run.py` wires a stage's data to the loop
  (`mode="train"`).

The Task protocol
-----------------
A stage supplies a `Task` (avs_jax/train/tasks.py: `init_variables`, `loss_and_metrics`,
`param_labels`, `eval_metrics`; all but `param_labels` run inside `jax.jit`), optionally
`summary_images` (host side: the panels TensorBoard shows at each validation).

Running a stage
---------------
::

    config.update(default_train_config("avsnet"))          # then the experiment's overrides
    summary = train_and_evaluate(config, workdir, task,
                                 train_iter_fn=lambda: iter(train_dataset),  # endless, global batches
                                 eval_iter_fn=lambda: iter(val_dataset),     # finite, or None
                                 steps_per_epoch=num_train_examples // batch_size)

- Length: `config.train.num_steps` if > 0, else `num_epochs * steps_per_epoch`.
- Every `log_every` steps the host reads the buffered step metrics once: checks them for
  non-finite losses, writes window means (plus samples/s) to `workdir/tensorboard` and
  `workdir/metrics.jsonl`, updates the tqdm bar. No other host syncs happen between steps.
- Validation every epoch (or every `eval_every` steps), then a checkpoint carrying the
  validation metrics; extra checkpoints every `checkpoint_every` steps and at the end.
- Checkpoints in `workdir/checkpoints/<step>/{state,data,meta}`; the latest
  `config.checkpoint.keep` and the best by `best_metric`/`best_mode` are kept. A run whose
  workdir already has checkpoints resumes from the newest readable one exactly: same state, same data
  position (when `train_iter_fn` returns a grain `DatasetIterator`, whose position is saved),
  same random stream; losses equal the uninterrupted run's step for step.
- A NaN/inf loss raises `NonFiniteLossError` naming the step and the last good checkpoint;
  states are only saved after their losses were checked, so that checkpoint is good.
- SIGTERM or Ctrl-C: the step in flight finishes, a checkpoint is saved, the function returns
  with `stopped="signal"` (a second Ctrl-C interrupts at once); `run.train` then raises
  `TrainingInterrupted`, and `python -m avs_jax.main` exits with 128 + the signal number.
- One run per workdir: `workdir/.lock` (avs_jax/workdir_lock.py). A checkpoint that cannot be
  read is skipped on resume (moved to `checkpoints_unreadable/`); metrics.jsonl records past
  the restored step are dropped, so each step is logged once. `config.train.stop_at_step`
  stops the same way at a given step.
- Pretrained weights: `config.init_from` = orbax checkpoint dir holding {"params": ...,
  ["batch_stats": ...]} (or a bare params tree), merged under `config.init_from_target`
  ("/"-separated path, "" = root) where paths and shapes match; a missing file is an error
  naming it. Applied only to a fresh run (a resumed run takes everything from its checkpoint).
- Several hosts: `config.distributed.multi_host = True` calls `jax.distributed.initialize()`
  first, with `coordinator_address` / `num_processes` / `process_id` from the config or, left
  empty, from the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment
  variables or the cluster (SLURM, Open MPI, TPU). Each process's iterator then yields
  its own slice of the global batch (split by `jax.process_index()`), and only process 0
  writes metrics. The local batch must divide over the local devices.
- Evaluation of a finished run: `checkpointing.restore_variables(workdir + "/checkpoints",
  "best" | None | step)` returns ({"params", "batch_stats"...}, meta) as numpy arrays.
"""
