"""TensorBoard images at each validation (avs_jax/train/summaries.py): the colours are the
evaluation figures', a tiny run's event file holds the panels of the same validation samples at
every validation, and both stages' tasks render theirs."""

import io
import struct
import sys
from pathlib import Path

import jax
import matplotlib
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_toy  # noqa: E402

from avs_jax.evaluation.figures import DEPTH_CMAP, depth_vmax  # noqa: E402
from avs_jax.train import summaries  # noqa: E402
from avs_jax.train.loop import train_and_evaluate  # noqa: E402


def end_colours(cmap: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 RGB of `cmap` at its bottom and top."""
    lut = matplotlib.colormaps[cmap]
    return np.asarray(lut(0.0, bytes=True)[:3]), np.asarray(lut(1.0, bytes=True)[:3])


def read_images(logdir: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """tag -> [(step, decoded RGB uint8 [H, W, 3])] of the image summaries of the event files.

    Reads the TFRecord framing (length u64, its crc u32, the Event, its crc u32) and parses each
    record with tensorboardX's Event proto (TensorBoard itself is not a dependency).
    """
    from tensorboardX.proto import event_pb2

    images: dict[str, list] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            for value in event.summary.value:
                if value.HasField("image"):
                    png = np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))
                    assert png.shape == (value.image.height, value.image.width, 3)
                    images.setdefault(value.tag, []).append((event.step, png))
    return images


def test_depth_colours_are_the_figures_and_ground_truth_and_prediction_share_the_range():
    h, w, max_depth = 4, 6, 10.0
    gt = np.full((h, w), 4.0, np.float32)
    gt[0, 0] = 0.0  # invalid
    gt[0, 1] = 12.0  # beyond max_depth: invalid
    vmax = depth_vmax(gt, max_depth)
    assert vmax == pytest.approx(5.0)  # 1.25 x the 99th percentile of the valid 4 m
    pred = np.full((h, w), 4.0, np.float32)
    pred[1, 0], pred[1, 1], pred[1, 2] = 0.0, vmax, 3 * vmax  # the ends; beyond vmax clips
    image = np.random.default_rng(0).random((1, h, w, 3), np.float32)
    echo = np.zeros((1, h, w, 2), np.float32)
    echo[0, 0, :, 0] = 5.0  # the lowest frequency of the left ear
    panel = summaries.depth_panels(image, gt[None], pred[None], echo, max_depth)
    assert panel.shape == (1, 2 * h, 2 * w, 3) and panel.dtype == np.uint8
    rgb, stft = panel[0, :h, :w], panel[0, :h, w:]
    gt_panel, pred_panel = panel[0, h:, :w], panel[0, h:, w:]
    np.testing.assert_array_equal(rgb, np.round(image[0] * 255).astype(np.uint8))
    near, far = end_colours(DEPTH_CMAP)
    np.testing.assert_array_equal(pred_panel[1, 0], near)
    np.testing.assert_array_equal(pred_panel[1, 1], far)
    np.testing.assert_array_equal(pred_panel[1, 2], far)
    # One range: equal depths get equal colours in both panels; invalid ground truth is white.
    np.testing.assert_array_equal(gt_panel[2:], pred_panel[2:])
    np.testing.assert_array_equal(gt_panel[0, :2], np.full((2, 3), 255))
    # The STFT: grey, low frequencies at the bottom (as Fig. 6), the loudest white, 80 dB below
    # it and less black.
    np.testing.assert_array_equal(stft[-1], np.full((w, 3), 255))
    np.testing.assert_array_equal(stft[:-1], np.zeros((h - 1, w, 3)))
    grey = summaries.stft_panel(np.array([[1.0, 0.1, 1e-4, 1e-6]]))[0, :, 0]
    np.testing.assert_array_equal(grey, [255, round(255 * 60 / 80), 0, 0])
    # The Only-RGB model (no echo input): a white panel in its place.
    no_echo = summaries.depth_panels(image, gt[None], pred[None], None, max_depth)
    np.testing.assert_array_equal(no_echo[0, :h, w:], np.full((h, w, 3), 255))
    # The same colours as matplotlib's imshow with the figures' vmin/vmax.
    values = np.linspace(-1.0, 6.0, 29, dtype=np.float32)
    expected = matplotlib.colormaps[DEPTH_CMAP](
        matplotlib.colors.Normalize(0.0, vmax, clip=True)(values), bytes=True
    )[..., :3]
    np.testing.assert_array_equal(summaries.colorize(values, 0.0, vmax, DEPTH_CMAP), expected)


def test_disparity_is_normalised_per_image_as_monodepth2():
    disp = np.linspace(0.1, 0.9, 40, dtype=np.float32).reshape(1, 4, 10)
    image = np.zeros((1, 4, 10, 3), np.float32)
    panel = summaries.disparity_panels(image, disp)
    assert panel.shape == (1, 8, 10, 3)
    low, high = end_colours(summaries.DISPARITY_CMAP)
    np.testing.assert_array_equal(panel[0, :4], np.zeros((4, 10, 3)))  # the frame on top
    np.testing.assert_array_equal(panel[0, 4, 0], low)  # the minimum
    np.testing.assert_array_equal(panel[0, 7, -1], high)  # above the 95th percentile
    # Scaling the disparity (a relative model's free scale) changes nothing.
    np.testing.assert_array_equal(summaries.disparity_panels(image, 3 * disp), panel)


class PictureToy(train_toy.ToyTask):
    """The loop tests' toy with panels: its input as RGB, its target as a constant depth map."""

    def summary_images(self, variables, batch):
        pred = np.asarray(self.model.apply(variables, batch["image"], train=False))
        shape = batch["image"].shape[:3]
        gt = np.broadcast_to(batch["target"][:, None, None], shape)
        pred = np.broadcast_to(pred[:, None, None], shape)
        return {"depth": summaries.depth_panels(batch["image"], gt, pred, None, max_depth=10.0)}


def test_a_tiny_run_writes_the_same_samples_panels_at_each_validation(tmp_path):
    out = train_and_evaluate(
        train_toy.config(),  # 12 steps, validations at 4, 8, 12; num_summary_images 4
        str(tmp_path),
        PictureToy(),
        train_toy.train_iter,
        train_toy.eval_iter,
    )
    assert [r["step"] for r in out["eval"]] == [4, 8, 12]
    images = read_images(tmp_path / "tensorboard")
    assert sorted(images) == [f"eval/depth/{i}" for i in range(4)]
    first = train_toy.examples(16, seed=1)[:4]  # the first 4 of the first validation batch
    near, _ = end_colours(DEPTH_CMAP)
    for i, tag in enumerate(sorted(images)):
        assert [s for s, _ in images[tag]] == [4, 8, 12]
        for _, png in images[tag]:
            assert png.shape == (16, 16, 3)  # 8x8 panels, 2 x 2
            np.testing.assert_array_equal(png[:8, :8], np.round(first[i]["image"] * 255))
            # A constant depth d on 0 .. 1.25 d is one colour, never the near end.
            gt = png[8:, :8].reshape(-1, 3)
            assert (gt == gt[0]).all() and (gt[0] != near).any()
        # The same sample at each validation (the ground truth), the prediction changing.
        assert all(np.array_equal(png[8:, :8], images[tag][0][1][8:, :8]) for _, png in images[tag])
        assert not np.array_equal(images[tag][0][1][8:, 8:], images[tag][-1][1][8:, 8:])


def test_no_images_when_disabled_or_when_the_task_has_no_panels(tmp_path):
    state = type("State", (), {"params": {}, "model_state": {}})()
    batches = list(train_toy.eval_iter())
    for task, n in ((PictureToy(), 0), (train_toy.ToyTask(), 4)):
        images = summaries.ValidationImages(task, n)
        assert len(list(images.watch(batches))) == len(batches)
        assert images.render(state) == {}
    # Rows the pipeline padded (valid_example False) are never shown.
    padded = dict(batches[0], valid_example=np.arange(8) % 2 == 1)
    images = summaries.ValidationImages(PictureToy(), 3)
    list(images.watch([padded]))
    np.testing.assert_array_equal(images._samples["image"], batches[0]["image"][[1, 3, 5]])


@pytest.mark.parametrize("name", ["avsnet", "litemono"])
def test_both_stages_render_their_panels(name):
    from avs_jax.config_files import load_config
    from avs_jax.train.state import data_mesh, init_variables
    from avs_jax.train.tasks import make_task

    config = load_config(name, "tiny")
    task = make_task(config)
    rng = np.random.default_rng(0)
    n, (h, w) = 2, tuple(config.data.image_size)
    if name == "avsnet":
        batch = {
            "image": rng.random((n, h, w, 3), np.float32),
            "echo": rng.random((n, h, w, 2), np.float32),
            "depth": rng.uniform(0.5, 8.0, (n, h, w)).astype(np.float32),
        }
        expected = {"depth": (n, 2 * h, 2 * w, 3)}
    else:
        batch = {
            "frames": rng.random((n, 3, h, w, 3), np.float32),
            "intrinsics": np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3)).copy(),
        }
        expected = {"disparity": (n, 2 * h, w, 3)}
    variables = init_variables(task, jax.random.key(0), batch, data_mesh())
    images = task.summary_images(summaries.local_copy(variables), batch)
    assert {k: v.shape for k, v in images.items()} == expected
    assert all(v.dtype == np.uint8 for v in images.values())
