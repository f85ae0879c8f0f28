"""Figures people would rather look at than tables: PR and calibration curves, score histograms,
feature importance, confusion matrix. Matplotlib Agg only, so they render headless."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_curve  # noqa: E402


def pr_curve(y: np.ndarray, scores: np.ndarray, target_precision: float | None = None):
    precision, recall, _ = precision_recall_curve(y, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, lw=2)
    if target_precision is not None:
        ax.axhline(target_precision, ls="--", color="grey", label=f"target precision {target_precision:.2f}")
        ax.legend(loc="lower left")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall (counterfeit)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def reliability(y: np.ndarray, scores: np.ndarray, bins: int = 10):
    prob_true, prob_pred = calibration_curve(y, scores, n_bins=bins, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
    ax.plot(prob_pred, prob_true, marker="o", label="model")
    ax.set(xlabel="predicted probability", ylabel="observed counterfeit rate", title="Calibration")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def score_histogram(scores: np.ndarray, labels: np.ndarray | None = None, threshold: float | None = None):
    """Scores by label when labels are known (training), else all scores (a scoring day)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    bins = np.linspace(0, 1, 41)
    if labels is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8)
    else:
        for value, name, colour in ((0, "authentic", "tab:green"), (1, "counterfeit", "tab:red")):
            ax.hist(scores[labels == value], bins=bins, alpha=0.6, label=name, color=colour)
        ax.legend()
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", ls="--", lw=1)
    ax.set(xlabel="P(counterfeit)", ylabel="listings", title="Score distribution")
    fig.tight_layout()
    return fig


def feature_importance(names: list[str], importances: np.ndarray, top: int = 25):
    order = np.argsort(importances)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(order) + 1.2))
    ax.barh([names[i] for i in order], importances[order], color="tab:blue")
    ax.set(xlabel="permutation importance (ROC-AUC drop)", title="Feature importance")
    fig.tight_layout()
    return fig


def confusion(y: np.ndarray, flagged: np.ndarray):
    matrix = confusion_matrix(y, flagged.astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=12)
    ax.set_xticks([0, 1], ["not flagged", "flagged"])
    ax.set_yticks([0, 1], ["authentic", "counterfeit"])
    ax.set_title("Decisions at the chosen thresholds")
    fig.tight_layout()
    return fig
