"""The evaluation arithmetic: Dice, radial error in mm, missed/invented landmarks, MAE, targets."""

from __future__ import annotations

import numpy as np
import pytest

from models.algorithms.results import ImageAnalysis
from models.algorithms.vocabulary import LANDMARKS
from models.training.evaluate import Scores, dice, format_report, score_image, summarise


def test_dice_values():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = np.zeros((10, 10), bool)
    b[2:7] = True
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(2 * 30 / 100)
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) is None


def test_score_image_counts_errors_in_mm():
    true_lm = {n: None for n in LANDMARKS}
    true_lm["femoral_head_centre_right"] = [10.0, 10.0]
    true_lm["pubic_symphysis"] = [50.0, 50.0]
    pred = ImageAnalysis(landmarks={n: None for n in LANDMARKS})
    pred.landmarks["femoral_head_centre_right"] = (13.0, 14.0)  # 3,4 px -> 5 px
    pred.landmarks["stem_tip_left"] = (1.0, 1.0)  # invented
    pred.measurements = {"leg_length_discrepancy": 2.5}
    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    pred.masks = {"pelvis": mask}
    s = Scores()
    score_image(s, pred, {"pelvis": mask}, true_lm, {"leg_length_discrepancy": 1.0}, (0.5, 2.0))
    assert s.radial_mm["femoral_head_centre_right"] == [pytest.approx(np.hypot(3 * 2.0, 4 * 0.5))]
    assert s.missed["pubic_symphysis"] == 1 and s.invented["stem_tip_left"] == 1
    assert s.abs_err["leg_length_discrepancy"] == [1.5]
    summary = summarise(s)
    assert summary["dice"]["pelvis"]["mean"] == 1.0
    assert summary["landmarks_overall"]["missed"] == 1
    assert summary["targets"]["landmarks_missed"]["met"] is False
    assert summary["targets"]["leg_length_discrepancy_mae_mm"]["met"] is False
    assert "pelvis" in format_report(summary, "t")


def test_not_analysable_counts_every_true_landmark_missed():
    s = Scores()
    true_lm = {n: [1.0, 1.0] for n in LANDMARKS}
    score_image(s, ImageAnalysis(not_analysable="blank image"), {}, true_lm, {}, (1.0, 1.0), "x")
    assert sum(s.missed.values()) == len(LANDMARKS) and s.not_analysable == ["x: blank image"]
