"""BatVision data for training and evaluation: from the TFDS datasets to device-ready batches.

- `config.py`: `default_data_config(name)`, the data section of every experiment config.
- `datasets.py`: opening the built TFDS datasets (`open_dataset`, `split_size`).
- `audio.py`: BatVision's echo STFT (the chirp's binaural recording -> [H, W, 2] magnitude).
- `transforms.py`: decoding and the papers' augmentations as grain transforms.
- `device_prep.py`: the stage-1 echo STFT and ZoeDepth augmentation in JAX, run in the train step.
- `input_pipeline.py`: the grain pipelines (train, evaluation) and their checkpointable iterators.
"""
