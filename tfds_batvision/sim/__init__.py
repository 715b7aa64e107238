"""Room simulator internals: geometry, rendering, acoustics, scenes."""
