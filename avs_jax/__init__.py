"""avs_jax: AVS-Net (Audio-Visual Scale Net) in JAX/Flax.

Metric scale for monocular depth from a chirp and its binaural echo: a supervised
audio-visual pseudo-dense metric depth network (stage 1) whose per-image scale is put on
any relative depth model (stage 2).
"""

__version__ = "0.1.0"

__all__ = ["MetricScaler"]

from avs_jax import runtime_defaults as _runtime_defaults

_runtime_defaults.apply_xla_flags()  # before any backend exists
_runtime_defaults.tune_malloc()  # before XLA allocates


def __getattr__(name: str):
    """`avs_jax.MetricScaler`, imported on first use: it brings JAX, Flax and the models, which
    `import avs_jax` (and every `python -m avs_jax.X` before its flags are read) does not need."""
    if name == "MetricScaler":
        from avs_jax.metric_scaler import MetricScaler

        return MetricScaler
    raise AttributeError(f"module 'avs_jax' has no attribute {name!r}")
