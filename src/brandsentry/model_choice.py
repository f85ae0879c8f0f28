"""Which cascade ships: the configured kind, or a simpler candidate that does better on validation.

Hundreds of labelled listings is the normal case for a new brand, and boosted trees overfit them: on a
held-out real-photo benchmark the trained classifier scored below one of its own inputs. So training also
fits the `classifier.candidates` (a regularised logistic regression on the same cues, and the similarity
baseline alone) on the train split, learns each one's escalation band on validation, and ships the one with
the best cascaded validation ROC-AUC; the configured kind wins ties. The test split stays untouched.
"""

from __future__ import annotations

import logging
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
    best = max(aucs, key=aucs.get)  # the first maximum: the configured kind on ties
    table = ", ".join(f"{kind} {auc:.4f}" for kind, auc in aucs.items())
    if best == settings.kind:
        reason = f"{best}: best validation ROC-AUC ({table})"
    else:
        reason = f"{best} instead of the configured {settings.kind}: better validation ROC-AUC ({table})"
    log.info("model choice: %s", reason)
    return ModelChoice(fitted[best], best, aucs, reason)
