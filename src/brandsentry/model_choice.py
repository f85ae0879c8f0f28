"""Which cascade ships: the configured kind, or a simpler candidate that does better on validation.

Hundreds of labelled listings is the normal case for a new brand, and boosted trees overfit them: on a
held-out real-photo benchmark the trained classifier scored below one of its own inputs. So training also
fits the `classifier.candidates` (a regularised logistic regression on the same cues, and the similarity
baseline alone) on the train split and learns each one's escalation band on validation. The configured kind
ships unless a candidate's cascaded validation ROC-AUC beats it by more than the configured kind's own
standard error (Hanley & McNeil: a few hundred validation listings cannot tell closer models apart), or the
similarity baseline alone beats it at all. The test split stays untouched.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from brandsentry.classify import BASELINE_FEATURES, CascadeClassifier, ClassifierSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """The cascade that ships, its kind, every candidate's validation ROC-AUC, and why."""

    model: CascadeClassifier
    kind: str
    validation_roc_auc: dict[str, float]
    reason: str


def choose_model(
    settings: ClassifierSettings,
    cheap_names: list[str],
    all_names: list[str],
    train: tuple[pd.DataFrame, np.ndarray, np.ndarray],
    validation: tuple[pd.DataFrame, np.ndarray],
    max_escalation: float,
    max_auc_loss: float,
) -> ModelChoice:
    """Fit `settings.kind` and each candidate on `train` (features, y, groups); pick on `validation`."""
    features, y, groups = train
    val_features, val_y = validation
    fitted: dict[str, CascadeClassifier] = {}
    aucs: dict[str, float] = {}
    for kind in dict.fromkeys([settings.kind, *settings.candidates]):
        kind_settings = replace(settings, kind=kind)
        if kind == "similarity":
            missing = [name for name in BASELINE_FEATURES if name not in cheap_names]
            if missing:
                log.info("similarity baseline not fitted: cue(s) %s are not computed", missing)
                continue
            model = CascadeClassifier.similarity_baseline(kind_settings, features, y, groups)
        else:
            model = CascadeClassifier.fit(kind_settings, cheap_names, all_names, features, y, groups)
            model.learn_band(val_features, val_y, max_escalation, max_auc_loss)
        scores, _ = model.cascaded_scores(val_features)
        fitted[kind], aucs[kind] = model, float(roc_auc_score(val_y, scores))
    configured = settings.kind
    best = max(aucs, key=aucs.get)  # the first maximum: the configured kind on ties
    noise = auc_standard_error(aucs[configured], int(val_y.sum()), int(len(val_y) - val_y.sum()))
    table = ", ".join(f"{kind} {auc:.4f}" for kind, auc in aucs.items())
    beaten_by_baseline = aucs.get("similarity", -1.0) > aucs[configured]
    if best == configured:
        reason = f"{best}: best validation ROC-AUC ({table})"
    elif aucs[best] - aucs[configured] <= noise and not beaten_by_baseline:
        reason = (f"{configured}: {best}'s validation ROC-AUC is higher by {aucs[best] - aucs[configured]:.4f}, "
                  f"within the standard error {noise:.4f} ({table})")  # fmt: skip
        best = configured
    else:
        reason = f"{best} instead of the configured {configured}: better validation ROC-AUC ({table})"
    log.info("model choice: %s", reason)
    return ModelChoice(fitted[best], best, aucs, reason)


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of a ROC-AUC measured on this many listings."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    return math.sqrt(max(variance, 0.0) / max(positives * negatives, 1))
