"""The train core shared by both training stages, and the tasks of each stage."""
