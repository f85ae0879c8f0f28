"""Local features (SIFT or ORB) for logo verification, the same way for references and listings."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from brandsentry.cues.config import LogoParams


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class LocalFeatures:
    """Keypoint positions (N x 2, float32, in the pixels they were found at) and their descriptors."""

    points: np.ndarray
    descriptors: np.ndarray
    detector: str

    def __len__(self) -> int:
        return len(self.points)


def extract(grey: np.ndarray, params: LogoParams) -> LocalFeatures:
    """Detect and describe up to `params.max_features` keypoints of a greyscale uint8 image."""
    if params.detector == "sift":
        detector = cv2.SIFT_create(nfeatures=params.max_features)
        empty = np.empty((0, 128), np.float32)
    else:
        detector = cv2.ORB_create(nfeatures=params.max_features)
        empty = np.empty((0, 32), np.uint8)
    keypoints, descriptors = detector.detectAndCompute(grey, None)
    if descriptors is None or not keypoints:
        return LocalFeatures(np.empty((0, 2), np.float32), empty, params.detector)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    return LocalFeatures(points, descriptors, params.detector)


def match(query: LocalFeatures, train: LocalFeatures, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Lowe-ratio matches as (query indices, train indices); L2 for SIFT, Hamming for ORB."""
    if len(query) < 2 or len(train) < 2:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    norm = cv2.NORM_L2 if query.detector == "sift" else cv2.NORM_HAMMING
    pairs = cv2.BFMatcher(norm).knnMatch(query.descriptors, train.descriptors, k=2)
    good = [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance]
    return (
        np.array([m.queryIdx for m in good], dtype=np.intp),
        np.array([m.trainIdx for m in good], dtype=np.intp),
    )
