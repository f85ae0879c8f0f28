"""Retrieval metrics on L2-normalised embeddings, shared by scripts/eval_retrieval.py and `brandsentry evaluate`.

Exact inner-product ranking in numpy: the ground truth that approximate FAISS indexes are judged against.
"""

from __future__ import annotations

import numpy as np


def rank_by_inner_product(
    queries: np.ndarray, references: np.ndarray, k: int | None = None, chunk: int = 1024
) -> np.ndarray:
    """(n_queries, k) indices of the references with the highest inner product, best first (all when k=None).

    Ties keep reference order (stable sort), so the ranking is deterministic.
    """
    k = len(references) if k is None else min(k, len(references))
    ranked = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ references.T
        ranked[start : start + chunk] = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ranked


def recall_at_k(query_labels: np.ndarray, neighbour_labels: np.ndarray, k: int) -> float:
    """Fraction of queries with at least one same-label item among their first `k` neighbours."""
    if k < 1 or k > neighbour_labels.shape[1]:
        raise ValueError(f"k={k} outside 1..{neighbour_labels.shape[1]} ranked neighbours")
    hits = neighbour_labels[:, :k] == np.asarray(query_labels)[:, None]
    return float(hits.any(axis=1).mean())


def mean_average_precision(
    query_labels: np.ndarray, neighbour_labels: np.ndarray, relevant_counts: np.ndarray
) -> float:
    """Mean over queries of average precision, normalised by each query's number of relevant references.

    Relevant items missing from a truncated ranking count as never retrieved (precision 0).
    """
    relevant_counts = np.asarray(relevant_counts)
    if np.any(relevant_counts <= 0):
        raise ValueError(
            f"{int(np.sum(relevant_counts <= 0))} queries have no relevant reference: AP undefined"
        )
    hits = neighbour_labels == np.asarray(query_labels)[:, None]
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_hits = np.where(hits, np.cumsum(hits, axis=1) / ranks, 0.0)
    return float((precision_at_hits.sum(axis=1) / relevant_counts).mean())


def retrieval_report(
    reference_vectors: np.ndarray,
    reference_labels: np.ndarray,
    query_vectors: np.ndarray,
    query_labels: np.ndarray,
    ks: tuple[int, ...] = (1, 5),
) -> dict[str, float]:
    """Label-level R@k for each k and mAP over all references of the query's label, by exact search."""
    reference_labels, query_labels = np.asarray(reference_labels), np.asarray(query_labels)
    ranked = rank_by_inner_product(query_vectors, reference_vectors)
    neighbour_labels = reference_labels[ranked]
    labels, counts = np.unique(reference_labels, return_counts=True)
    count_of = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    relevant = np.array([count_of.get(label, 0) for label in query_labels.tolist()])
    report = {f"R@{k}": recall_at_k(query_labels, neighbour_labels, k) for k in ks}
    report["mAP"] = mean_average_precision(query_labels, neighbour_labels, relevant)
    return report
