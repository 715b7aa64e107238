"""avs_jax: AVS-Net (Audio-Visual Scale Net) in JAX/Flax.

Metric scale for monocular depth from a chirp and its binaural echo: a supervised
audio-visual pseudo-dense metric depth network (stage 1) whose per-image scale is put on
any relative depth model (stage 2).
"""

__version__ = "0.1.0"

from avs_jax import runtime_defaults as _runtime_defaults

_runtime_defaults.apply_xla_flags()  # before any backend exists
