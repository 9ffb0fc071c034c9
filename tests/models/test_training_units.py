"""Units of the analysis-model code: preprocessing, augmentation, losses, reader, export.

Tiny tensors only; each assertion can fail on a real bug (wrong axis, lost
side relabelling, off-by-half-pixel transforms, a loss that ignores validity).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS
from models.inference.preprocess import (
    grid_transform,
    map_to_source,
    mask_to_work_grid,
    normalise,
    to_work_grid,
)
from models.training.augment import (
    AugmentConfig,
    WorkSample,
    affine,
    augment,
    disc_targets,
    hflip,
    side_swap_index,
)
from models.training.dataset import (
    LANDMARK_SWAP,
    SEGMENT_SWAP,
    DatasetError,
    list_samples,
    load_folder,
)
from models.training.losses import dice_bce_loss, landmark_loss
from models.training.networks import SEGMENTATION_ARCHITECTURES, SGRLandmarkNet, UNet, soft_argmax
from models.training.toydata import write_toy_dataset


def test_grid_transform_is_isotropic_and_inverts():
    tf = grid_transform((1000, 2000), (0.2, 0.1), size=256)  # 200 mm x 200 mm
    assert tf.content_shape == (256, 256)
    assert tf.work_mm_per_px == pytest.approx(200 / 256)
    pts = np.array([[0.0, 0.0], [1999.0, 999.0], [123.4, 567.8]])
    assert np.allclose(tf.to_source(tf.to_work(pts)), pts)
    # The centre of work pixel 0 is the centre of the first block of source pixels.
    assert tf.to_source(np.array([[0.0, 0.0]]))[0] == pytest.approx([(tf.scale_x - 1) / 2, (tf.scale_y - 1) / 2])


def test_mask_round_trip_keeps_shape_and_position():
    mask = np.zeros((600, 800), bool)
    mask[200:400, 300:500] = True
    work, tf = to_work_grid(mask.astype(np.float32), (0.15, 0.15), size=128)
    assert work.shape == (128, 128)
    assert tf.content_shape == (96, 128)
    assert not work[96:].any(), "padding must stay zero"
    back = map_to_source(mask_to_work_grid(mask, tf), tf) > 0.5
    dice = 2 * (back & mask).sum() / (back.sum() + mask.sum())
    assert dice > 0.97


def test_normalise_clips_percentiles_and_handles_flat():
    img = np.linspace(0, 100, 10_000, dtype=np.float32).reshape(100, 100)
    out = normalise(img)
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.mean(out == 0.0) == pytest.approx(0.05, abs=0.01)
    assert not normalise(np.full((50, 50), 7.0, np.float32)).any()


def _sample(size: int = 32) -> WorkSample:
    masks = np.zeros((len(SEGMENTS), size, size), np.float32)
    masks[SEGMENTS.index("femur_right"), 10:20, 2:8] = 1.0
    lm = np.full((len(LANDMARKS), 2), np.nan)
    present = np.zeros(len(LANDMARKS), np.float32)
    i = LANDMARKS.index("femoral_head_centre_right")
    lm[i] = (5.0, 12.0)
    present[i] = 1
    valid = np.ones(len(SEGMENTS), np.float32)
    valid[SEGMENTS.index("implant_left")] = 0
    return WorkSample(np.zeros((size, size), np.float32), masks, valid, lm, np.ones(len(LANDMARKS), np.float32),
                      present, {})


def test_side_swap_pairs_every_sided_name():
    swap = side_swap_index(SEGMENTS)
    assert SEGMENTS[swap[SEGMENTS.index("femur_right")]] == "femur_left"
    assert SEGMENTS[swap[SEGMENTS.index("pelvis")]] == "pelvis"
    assert LANDMARKS[LANDMARK_SWAP[LANDMARKS.index("pubic_symphysis")]] == "pubic_symphysis"
    assert np.array_equal(SEGMENT_SWAP[SEGMENT_SWAP], np.arange(len(SEGMENTS)))
    with pytest.raises(ValueError):
        side_swap_index(("a_right",))


def test_flip_relabels_sides():
    s = hflip(_sample(), SEGMENT_SWAP, LANDMARK_SWAP)
    left = SEGMENTS.index("femur_left")
    assert s.masks[left, 10:20, 24:30].all() and s.masks[left].sum() == 60
    assert not s.masks[SEGMENTS.index("femur_right")].any()
    j = LANDMARKS.index("femoral_head_centre_left")
    assert s.lm_present[j] == 1 and s.landmarks[j] == pytest.approx((26.0, 12.0))
    assert s.mask_valid[SEGMENTS.index("implant_right")] == 0


def test_affine_moves_landmarks_with_the_image():
    s = _sample(64)
    i = LANDMARKS.index("femoral_head_centre_right")
    s.landmarks[i] = (20.0, 30.0)
    s.image[30, 20] = 1.0
    out = affine(s, angle_deg=20.0, scale=1.1, tx=3.0, ty=-2.0)
    y, x = np.unravel_index(np.argmax(out.image), out.image.shape)
    assert np.hypot(x - out.landmarks[i, 0], y - out.landmarks[i, 1]) < 1.0
    far = affine(s, 0.0, 1.0, 200.0, 0.0)
    assert far.lm_present[i] == 0 and far.lm_labelled[i] == 0


def test_augment_is_reproducible_from_the_seed():
    s = _sample()
    s.image[:] = np.random.default_rng(1).random(s.image.shape)
    a = augment(s, np.random.default_rng(5), AugmentConfig(), SEGMENT_SWAP, LANDMARK_SWAP)
    b = augment(s, np.random.default_rng(5), AugmentConfig(), SEGMENT_SWAP, LANDMARK_SWAP)
    c = augment(s, np.random.default_rng(6), AugmentConfig(), SEGMENT_SWAP, LANDMARK_SWAP)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)


def test_disc_targets_centre_and_absence():
    discs = disc_targets(np.array([[10.0, 20.0], [0.0, 0.0]]), np.array([1, 0]), 32, 3.0)
    assert discs[0, 20, 10] == 1.0 and discs[0, 20, 15] == 0.0 and discs[0].sum() == pytest.approx(np.pi * 9, rel=0.2)
    assert not discs[1].any()


def test_dice_bce_prefers_the_truth_and_ignores_unlabelled():
    target = torch.zeros(1, 2, 16, 16)
    target[0, 0, 4:12, 4:12] = 1
    good = (target * 2 - 1) * 10
    bad = -good
    valid = torch.ones(1, 2)
    assert dice_bce_loss(good, target, valid) < 0.1 < dice_bce_loss(bad, target, valid)
    only_second = torch.tensor([[0.0, 1.0]])
    mixed = good.clone()
    mixed[0, 0] = bad[0, 0]
    assert dice_bce_loss(mixed, target, only_second) == pytest.approx(float(dice_bce_loss(good, target, only_second)))


def test_landmark_loss_counts_present_points_only():
    logits = torch.full((1, 2, 8, 8), -10.0)
    coords = torch.tensor([[[3.0, 4.0], [100.0, 100.0]]])
    target = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    present = torch.tensor([[1.0, 0.0]])
    loss = landmark_loss(logits, torch.zeros(1, 2, 8, 8), coords, target, torch.ones(1, 2), present)
    assert float(loss) < 0.01
    worse = landmark_loss(logits, torch.zeros(1, 2, 8, 8), coords + 4.0, target, torch.ones(1, 2), present)
    assert float(worse) > 1.0


def test_soft_argmax_finds_a_peak_with_subpixel_precision():
    scores = torch.full((1, 1, 32, 32), -50.0)
    scores[0, 0, 10, 20] = 50.0
    scores[0, 0, 10, 21] = 50.0
    assert soft_argmax(scores)[0, 0].tolist() == pytest.approx([20.5, 10.0], abs=1e-3)


def test_networks_shapes():
    x = torch.zeros(2, 1, 32, 32)
    assert UNet(1, 11, base=4, depth=3)(x).shape == (2, 11, 32, 32)
    discs, coords = SGRLandmarkNet(len(LANDMARKS), base=4, depth=3, reg_ch=8)(x)
    assert discs.shape == (2, len(LANDMARKS), 32, 32) and coords.shape == (2, len(LANDMARKS), 2)


@pytest.mark.parametrize("architecture", sorted(SEGMENTATION_ARCHITECTURES))
def test_every_segmentation_architecture_trains_and_exports(architecture: str, tmp_path: Path):
    """One step changes the weights; the ONNX export gives the network's own probabilities."""
    import onnxruntime as ort

    from models.training.export import export_model
    from models.training.train import TrainConfig, build_model

    cfg = TrainConfig(task="segment", size=32, base_channels=4, depth=3, architecture=architecture)
    net = build_model(cfg)
    assert type(net) is SEGMENTATION_ARCHITECTURES[architecture]
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32)
    assert net(x).shape == (2, len(SEGMENTS), 32, 32)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    dice_bce_loss(net(x), (x > 0.5).expand(2, len(SEGMENTS), 32, 32).float(), torch.ones(2, len(SEGMENTS))).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    manifest = json.loads(export_model(net, "segment", tmp_path, 32, "0.0.1", {"config": {"architecture": architecture}}).read_text())
    session = ort.InferenceSession(str(tmp_path / manifest["file"]), providers=["CPUExecutionProvider"])
    (onnx_probabilities,) = session.run(None, {"image": x[:1].numpy()})
    with torch.no_grad():
        assert np.allclose(onnx_probabilities, torch.sigmoid(net.eval()(x[:1])).numpy(), atol=1e-5)
    # and a run can start from the exported model (hipnode train --init)
    from models.training.warm_start import warm_start

    assert warm_start(build_model(cfg), str(tmp_path), 32) < 1e-4


def test_architecture_is_checked():
    from models.training.train import TrainConfig

    with pytest.raises(ValueError, match="architecture must be one of"):
        TrainConfig(task="segment", architecture="vnet")
    with pytest.raises(ValueError, match="segmentation tasks"):
        TrainConfig(task="landmarks", architecture="unetpp")


def test_reader_rejects_bad_folders(tmp_path: Path):
    with pytest.raises(DatasetError, match="dataset.json"):
        list_samples(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(DatasetError, match="format"):
        list_samples(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "hipnode-train/1"}))
    with pytest.raises(DatasetError, match="no NAME.npz"):
        list_samples(tmp_path)
    np.savez(tmp_path / "a.npz", image=np.zeros((8, 8), np.float32))
    with pytest.raises(DatasetError, match="a.json"):
        list_samples(tmp_path)


def test_reader_labelled_versus_absent(tmp_path: Path):
    write_toy_dataset(tmp_path, 2, seed=3)
    meta = json.loads((tmp_path / "toy_0000.json").read_text())
    del meta["landmarks"]["greater_trochanter_left"]
    (tmp_path / "toy_0000.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "toy_0000.npz") as d:
        arrays = {k: d[k] for k in d.files if k != "pelvis"}
    np.savez(tmp_path / "toy_0000.npz", **arrays)
    s = load_folder(tmp_path, 64)[0]
    assert s.mask_valid[SEGMENTS.index("pelvis")] == 0 and s.mask_valid[SEGMENTS.index("femur_left")] == 1
    gt = LANDMARKS.index("greater_trochanter_left")
    stem = LANDMARKS.index("stem_tip_right")
    assert s.lm_labelled[gt] == 0
    assert s.lm_labelled[stem] == 1 and s.lm_present[stem] == 0  # pre-op: labelled absent
    assert s.image.shape == (64, 64) and 0.0 <= s.image.min() and s.image.max() <= 1.0


def test_cli_task_list_is_the_trainers():
    """The CLI keeps its own copy of the task names (parsing must not import torch); it must not drift."""
    from models.training.train import TASKS
    from node.commands.train import TASKS as CLI_TASKS

    assert CLI_TASKS == TASKS
