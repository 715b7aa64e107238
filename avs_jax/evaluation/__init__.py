"""Checkpoint-based evaluation: the paper's Tables 1 and 2, plug-and-play scaling, figures, Grad-CAM."""
