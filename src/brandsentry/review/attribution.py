"""Cue attributions: which cues moved a flagged listing's score, measured on the model that scored it.

The evidence page shows them beside the cue values, and only once the bundle's cascade replays the run's
recorded scores (otherwise they would explain another model's decisions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the classifier (scikit-learn) is only reached through a loaded bundle
    from brandsentry.classify import CascadeClassifier


def cue_attributions(
    predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, baseline: pd.Series
) -> pd.DataFrame:
    """How much each cue moved each row's score: score(row) - score(row with that cue at its baseline).

    One-at-a-time replacement by a typical value (the run's median): cheap, model-agnostic, and honest
    about what it is, a local sensitivity rather than a decomposition (the deltas need not sum up).
    """
    names = list(baseline.index)
    if rows.empty:
        return pd.DataFrame(columns=names, dtype=np.float64)
    base_scores = np.asarray(predict(rows), dtype=np.float64)
    variants = []
    for name in names:
        variant = rows.copy()
        variant[name] = baseline[name]
        variants.append(variant)
    scores = np.asarray(predict(pd.concat(variants, ignore_index=True)), dtype=np.float64)
    deltas = base_scores[None, :] - scores.reshape(len(names), len(rows))
    return pd.DataFrame(deltas.T, columns=names, index=rows.index)


@dataclass(frozen=True)
class CascadePredictor:
    """A scoring bundle's cascade, to replay the score each listing got.

    A listing that earned the expensive cues was scored by the full model, the others by the cheap one;
    the replay and the attributions hold that recorded choice fixed and vary the cues of the model that
    actually scored the row.
    """

    model: CascadeClassifier

    @classmethod
    def from_bundle(cls, bundle) -> CascadePredictor:
        return cls(bundle.model)

    @property
    def full_names(self) -> tuple[str, ...]:
        return tuple(self.model.full.feature_names)

    def scores(self, rows: pd.DataFrame, escalated: np.ndarray) -> np.ndarray:
        """The cascaded score of each row, given whether the run escalated it."""
        return self.model.combine(self.model.cheap.predict_proba(rows), escalated, rows)

    def attributions(self, rows: pd.DataFrame, escalated: np.ndarray, baseline: pd.Series) -> pd.DataFrame:
        """Score deltas per cue (NaN for cues the scoring model does not read), rows aligned with `rows`."""
        escalated = np.asarray(escalated, dtype=bool)
        out = pd.DataFrame(np.nan, index=rows.index, columns=list(self.full_names))
        for mask, model in ((~escalated, self.model.cheap), (escalated, self.model.full)):
            if mask.any():
                names = list(model.feature_names)
                out.loc[mask, names] = cue_attributions(
                    model.predict_proba, rows.loc[mask, names], baseline[names]
                )
        return out


def page_attributions(predictor: CascadePredictor, results, chosen, ok) -> tuple[pd.DataFrame | None, str]:
    """Cue deltas of the chosen rows, only when the model demonstrably reproduces the run's scores."""
    names = list(predictor.full_names)
    missing = sorted(set(names) - set(results.columns))
    if missing:
        return None, f"results lack the model's features {missing}: no attributions"
    rows = chosen[names].astype(np.float64)
    escalated = chosen["escalated"].fillna(False).astype(bool).to_numpy()
    replayed = predictor.scores(rows, escalated)
    recorded = chosen["score"].to_numpy(np.float64)
    if not np.allclose(replayed, recorded, atol=1e-6, equal_nan=True):
        worst = float(np.nanmax(np.abs(replayed - recorded)))
        return (
            None,
            f"the given model does not reproduce the run's scores (off by up to {worst:.3g}): no attributions",
        )
    baseline = ok[names].astype(np.float64).median(skipna=True)
    deltas = predictor.attributions(rows, escalated, baseline)
    text = (
        "Δscore = score minus the score with that one cue set to the run's median, by the model that scored "
        "the listing (positive: the cue's value pushed the score up)"
    )
    return deltas, text
