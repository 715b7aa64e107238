"""Flax modules (linen, NHWC). Models hold parameters only and never read files."""
