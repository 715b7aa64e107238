"""Grad-CAM (Selvaraju et al. 2017) on any layer of a Flax model, as the paper's Fig. 6.

A model exposes a layer by `self.perturb(name, x)` (an identity that Flax lets us
differentiate through) and by sowing the activation, `self.sow("intermediates", name, x)`.
Then, for a scalar objective y (e.g. the mean predicted depth):

    Grad-CAM:  cam = ReLU( Σ_k α_k A_k ),   α_k = mean_{h,w} ∂y/∂A_k          (paper [38])
    HiResCAM:  cam = ReLU( Σ_k ∂y/∂A_k ⊙ A_k )                       (Draelos & Carin 2020)

Grad-CAM averages each channel's gradient over the map, so it localises only through the
spatial selectivity of the channels themselves (deep features are selective; the raw STFT,
with two channels, is not). HiResCAM keeps the gradient's location and is the faithful choice
on shallow layers. Both are normalised to [0, 1] per image and resized to the input size.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from avs_jax.errors import BadInputError
from avs_jax.models.layers import resize_bilinear

Array = jax.Array


def cam_from_activations(acts: Array, grads: Array, method: str = "gradcam") -> Array:
    """`[B, h, w, K]` activations and gradients -> `[B, h, w]` map in [0, 1]."""
    if method == "gradcam":
        weights = grads.mean(axis=(1, 2), keepdims=True)
        cam = (weights * acts).sum(-1)
    elif method == "hirescam":
        cam = (grads * acts).sum(-1)
    else:
        raise BadInputError(f"method must be 'gradcam' or 'hirescam', got {method!r}")
    cam = jax.nn.relu(cam)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0)


def one_shot_compiler_options() -> dict[str, Any] | None:
    """XLA options for a program compiled to run once: XLA:CPU's lowest backend optimisation.

    The Grad-CAM pass runs once per figure batch, so its compile is the cost. Measured on the
    tiny AVS-Net's pass (quickstart checkpoint, 2-core AMD EPYC, two alternating pairs): compile
    8.8-9.5 -> 3.0-4.2 s, run 0.22-0.35 s either way, maps equal to 6e-8. Not for the
    evaluation's forwards, which run every test batch (level 0 ran the forward at 2.3x the time).
    Other backends keep their defaults (not measured there).
    """
    return {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None


def grad_cams(
    apply_fn: Callable[..., Any],
    variables: dict,
    layers: Sequence[str],
    objective: Callable[[Any], Array],
    *args: Any,
    method: str = "gradcam",
    out_sizes: dict[str, tuple[int, int]] | None = None,
    **kwargs: Any,
) -> dict[str, Array]:
    """Grad-CAM of each of `layers` for `objective(model output)` -> {layer: `[B, H, W]` in [0, 1]}.

    One compiled forward and backward pass serves every layer: the gradient with respect to all
    perturbations comes out of a single `jax.grad`. (Run eagerly, the same pass compiled ~300
    primitives one by one, ~17 s per map for the tiny AVS-Net on a CPU.) Each call compiles
    its pass anew (seconds): give it whole batches rather than one image at a time.

    Args:
      apply_fn: the module's `apply`.
      variables: its variables (params, batch_stats, ...).
      layers: names passed to `perturb` and `sow` inside the model.
      objective: model output -> scalar per batch (summed over the batch: images are
        independent at inference, so each image gets its own gradient).
      *args: the model's array inputs (None for an absent one); **kwargs: its static options
        (`train=False` among them).
      out_sizes: layer -> (H, W) to resize its map to, e.g. the STFT or the RGB input size.
    """
    if method not in ("gradcam", "hirescam"):
        raise BadInputError(f"method must be 'gradcam' or 'hirescam', got {method!r}")
    out_sizes = dict(out_sizes or {})

    def run(variables, *args):
        _, state = apply_fn(variables, *args, mutable=["intermediates", "perturbations"], **kwargs)

        def f(perturbations):
            out = apply_fn({**variables, "perturbations": perturbations}, *args, **kwargs)
            return jnp.sum(objective(out))

        grads = jax.grad(f)(state["perturbations"])
        cams = {}
        for layer in layers:
            acts = state["intermediates"][layer][0]
            cam = cam_from_activations(
                acts.astype(jnp.float32), grads[layer].astype(jnp.float32), method
            )
            if layer in out_sizes:
                cam = resize_bilinear(cam[..., None], out_sizes[layer], align_corners=False)[..., 0]
            cams[layer] = cam
        return cams

    return jax.jit(run, compiler_options=one_shot_compiler_options())(variables, *args)


def grad_cam(
    apply_fn: Callable[..., Any],
    variables: dict,
    layer: str,
    objective: Callable[[Any], Array],
    *args: Any,
    method: str = "gradcam",
    out_size: tuple[int, int] | None = None,
    **kwargs: Any,
) -> Array:
    """Grad-CAM of one `layer` -> `[B, H, W]` in [0, 1]; see `grad_cams`."""
    return grad_cams(
        apply_fn,
        variables,
        [layer],
        objective,
        *args,
        method=method,
        out_sizes={layer: out_size} if out_size is not None else None,
        **kwargs,
    )[layer]
