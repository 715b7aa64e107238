"""A toy Task for the train-core tests: a tiny conv net with BatchNorm regressing a scalar.

Not a test module (no test_ prefix); imported by tests/test_train_*.py and their subprocesses.
"""

from __future__ import annotations

import functools
import time

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avs_jax.train.defaults import default_train_config


class ToyNet(nn.Module):
    """[B, 8, 8, 3] -> [B]: conv (the "encoder"), BatchNorm, ReLU, global mean, dense head."""

    dtype: jnp.dtype = jnp.float32
    features: int = 8

    @nn.compact
    def __call__(self, x, train: bool):
        # No conv bias before BatchNorm (as in ResNets): its gradient is zero up to round-off,
        # which Adam would blow up to lr-sized steps of arbitrary sign.
        x = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name="encoder")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        return nn.Dense(1, dtype=self.dtype, name="head")(x)[:, 0]


class ToyTask:
    """Regress `target` from `image`; train-time input noise makes the step use its rng."""

    def __init__(self, dtype=jnp.float32, noise: float = 0.01, features: int = 8):
        self.model = ToyNet(dtype=dtype, features=features)
        self.noise = noise

    def init_variables(self, rng, batch):
        return self.model.init(rng, batch["image"], train=False)

    def loss_and_metrics(self, params, model_state, batch, rng, train):
        x = batch["image"]
        x = x + self.noise * jax.random.normal(rng, x.shape, x.dtype)
        pred, new_vars = self.model.apply(
            {"params": params, **model_state}, x, train=train, mutable=list(model_state)
        )
        err = pred.astype(jnp.float32) - batch["target"]
        loss = jnp.mean(err**2)
        return loss, (new_vars, {"mae": jnp.mean(jnp.abs(err))})

    def param_labels(self, params):
        return {
            k: jax.tree.map(lambda _: "encoder" if k == "encoder" else "default", v)
            for k, v in params.items()
        }

    def eval_metrics(self, params, model_state, batch):
        pred = self.model.apply({"params": params, **model_state}, batch["image"], train=False)
        err = pred.astype(jnp.float32) - batch["target"]
        return {
            "mse": jnp.mean(err**2),
            "abs_rel": jnp.mean(jnp.abs(err) / jnp.abs(batch["target"])),
        }


def examples(n: int, seed: int = 0) -> list[dict]:
    """n examples whose target is a fixed linear function of the image's channel means."""
    rs = np.random.RandomState(seed)
    out = []
    for i in range(n):
        image = rs.rand(8, 8, 3).astype(np.float32)
        target = np.float32(1.0 + 2.0 * image[..., 0].mean() - image[..., 1].mean())
        out.append({"image": image, "target": target, "sample_id": f"toy/{i}"})
    return out


def train_iter(
    n: int = 32, batch_size: int = 8, seed: int = 0, poison: int | None = None, delay_s: float = 0.0
):
    """Endless shuffled grain iterator of batches (checkpointable).

    poison: index of an example whose target is NaN; the data is then not shuffled, so the
    example is in batch poison // batch_size (0-based), i.e. train step poison // batch_size + 1.
    delay_s: seconds each batch takes to read (a run slow enough to be killed mid-way).
    """
    data = examples(n, seed)
    ds = grain.MapDataset.source(data)
    if poison is None:
        ds = ds.shuffle(seed=seed)
    else:
        data[poison]["target"] = np.float32("nan")
    ds = ds.repeat(None)
    batches = _local_rows(ds.batch(batch_size, drop_remainder=True)).to_iter_dataset()
    if delay_s:  # on the iterator, after grain's read-ahead threads: each next() waits
        batches = batches.map(functools.partial(_slowly, delay_s))
    return iter(batches)


def _slowly(delay_s: float, batch: dict) -> dict:
    time.sleep(delay_s)
    return batch


def eval_iter(n: int = 16, batch_size: int = 8):
    return iter(
        _local_rows(
            grain.MapDataset.source(examples(n, seed=1)).batch(batch_size)
        ).to_iter_dataset()
    )


def _local_rows(batches: grain.MapDataset) -> grain.MapDataset:
    """This process's contiguous share of each global batch (all of it in a one-process run), so
    that a multi-process run trains on the one-process run's global batches and must match its
    losses (avs_jax's input pipeline strides the examples over hosts instead)."""
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        return batches

    def rows(batch):
        per = len(batch["target"]) // count
        return {k: v[index * per : (index + 1) * per] for k, v in batch.items()}

    return batches.map(rows)


def config(**train) -> ml_collections.ConfigDict:
    """A small AVS-Net-recipe config (OneCycle AdamW) for the toy."""
    c = default_train_config("avsnet")
    c.train.batch_size = 8
    c.train.steps_per_epoch = 4
    c.train.num_epochs = 3
    c.train.learning_rate = 3e-2
    c.train.grad_clip_norm = 1.0
    c.train.log_every = 1
    c.train.progress_bar = False
    c.checkpoint.best_metric = "abs_rel"
    c.checkpoint.async_save = True
    c.train.update(train)
    return c


def optimizer_state(tx, params):
    """`tx.init(params)` on the parameters' devices, for `plain_adam_step`.

    A fresh optax state sits on the default device, while the step returns it beside the
    parameters (on their mesh); passed as it is, the second step would compile again (~20 s for
    the tiny models on 2 cores).
    """
    return jax.device_put(tx.init(params), jax.tree.leaves(params)[0].sharding)


def plain_adam_step(task, tx, compiler_options=None):
    """A jitted plain-optax step on a Task's loss (no train core): for the overfit-style tests.

    `(params, model_state, opt_state, batch, rng) -> (params, model_state, opt_state, loss,
    metrics)`, BatchNorm in training mode; start from `optimizer_state(tx, params)`.
    `compiler_options` go to `jax.jit`.
    """
    import optax  # pylint: disable=import-outside-toplevel

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def step(params, model_state, opt_state, batch, rng):
        grad_fn = jax.value_and_grad(task.loss_and_metrics, has_aux=True)
        (loss, (model_state, metrics)), grads = grad_fn(params, model_state, batch, rng, True)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), model_state, opt_state, loss, metrics

    return step
