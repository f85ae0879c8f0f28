"""Retrieval metrics checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from brandsentry.retrieval_metrics import (
    mean_average_precision,
    rank_by_inner_product,
    recall_at_k,
    retrieval_report,
)


def test_rank_by_inner_product_is_best_first_and_stable():
    references = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert rank_by_inner_product(queries, references).tolist() == [[0, 2, 3, 1], [1, 3, 0, 2]]
    assert rank_by_inner_product(queries, references, k=2, chunk=1).tolist() == [[0, 2], [1, 3]]


def test_recall_at_k():
    neighbours = np.array([["b", "a", "a"], ["b", "b", "c"]])
    queries = np.array(["a", "c"])
    assert recall_at_k(queries, neighbours, 1) == 0.0
    assert recall_at_k(queries, neighbours, 2) == 0.5
    assert recall_at_k(queries, neighbours, 3) == 1.0
    with pytest.raises(ValueError, match="k=4"):
        recall_at_k(queries, neighbours, 4)


def test_mean_average_precision_counts_unretrieved_relevant_items():
    neighbours = np.array([["b", "a", "a"], ["c", "b", "b"]])
    queries = np.array(["a", "c"])
    # query a: hits at ranks 2 and 3 of 2 relevant -> (1/2 + 2/3) / 2; query c: rank 1 of 2 relevant -> 1/2
    expected = ((1 / 2 + 2 / 3) / 2 + 1 / 2) / 2
    assert mean_average_precision(queries, neighbours, np.array([2, 2])) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no relevant reference"):
        mean_average_precision(queries, neighbours, np.array([2, 0]))


def test_retrieval_report_on_a_toy_set():
    references = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]  # labels x, x, y, z
    reference_labels = np.array(["x", "x", "y", "z"])
    queries = np.array([[1.0, 0.0, 0.0], [0.0, 0.8, 0.6], [0.0, 0.6, 0.8]], dtype=np.float32)
    report = retrieval_report(references, reference_labels, queries, np.array(["x", "z", "z"]), ks=(1, 2))
    assert report["R@1"] == pytest.approx(2 / 3)
    assert report["R@2"] == 1.0
    assert report["mAP"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
