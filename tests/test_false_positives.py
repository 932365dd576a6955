"""tools/false_positives.py: each kind of false positive, on boxes drawn by hand."""

import numpy as np
import pytest

from numpy_retinanet.tools.false_positives import classify_detections

GT = {"boxes": np.array([[10, 10, 30, 30], [60, 60, 80, 80]], np.float32), "labels": np.array([0, 1])}


def _det(boxes, labels, scores=None):
    boxes = np.asarray(boxes, np.float32)
    return {"boxes": boxes, "labels": np.asarray(labels),
            "scores": np.asarray(scores if scores is not None else np.linspace(0.9, 0.6, len(boxes)), np.float32)}


def test_each_kind_of_false_positive_is_named():
    det = _det([[10, 10, 30, 30],    # true positive (class 0)
                [11, 11, 31, 31],    # the same box again, lower score: duplicate
                [60, 60, 80, 80],    # on the class-1 box, said class 0: wrong class
                [18, 18, 38, 38],    # class 0 overlapping its box by IoU 0.1-0.5: localization
                [100, 100, 110, 110],  # on the distractor
                [100, 10, 120, 30]],  # nothing there: background
               [0, 0, 0, 0, 1, 1])
    kinds = classify_detections(det, GT, distractors=np.array([[98, 98, 112, 112]], np.float32))
    assert kinds == ["true positive", "duplicate", "wrong class", "localization", "distractor", "background"]


def test_the_highest_score_takes_the_box_and_low_scores_are_left_out():
    det = _det([[11, 11, 31, 31], [10, 10, 30, 30], [60, 60, 80, 80]], [0, 0, 1], scores=[0.6, 0.9, 0.3])
    assert classify_detections(det, GT, score_threshold=0.5) == ["true positive", "duplicate"]
    assert classify_detections(det, GT, score_threshold=0.2) == ["true positive", "duplicate", "true positive"]


def test_no_boxes_and_no_distractors():
    det = _det([[0, 0, 5, 5]], [0])
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    assert classify_detections(det, empty) == ["background"]
    assert classify_detections(_det(np.zeros((0, 4)), []), GT) == []
    with pytest.raises(ValueError, match="score_threshold"):
        classify_detections(det, GT, score_threshold=1.5)
