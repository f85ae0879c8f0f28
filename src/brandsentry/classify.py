"""Cue features → calibrated probability of "counterfeit" → per-brand decision thresholds.

The model is fitted on the training split and calibrated on out-of-fold predictions over product-grouped
folds of it (calibration never sees a score of a product the model was fitted on), then refitted on the
whole split, so no labelled product is kept from the model. Thresholds are picked on the validation split
for a target precision, per brand where a brand has enough labelled listings, else globally.

Any cue matrix trains: a cue that is NaN or takes one value on every training row carries nothing to learn
(and HistGradientBoosting's binning fails on it), so it is dropped from the model with one log line naming
it and why, and the model keeps the names it uses; a cue that is so only on the rows one calibration fold
fits on is left out of that fold's model alone (logged too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.settings import load_settings

log = logging.getLogger(__name__)

LABELS = ("authentic", "counterfeit")
KINDS = ("hgb", "logreg", "similarity")
# The similarity baseline reads these two cues (both from the similarity group, always cheap).
BASELINE_FEATURES = ("sim_brand_top1", "sim_other_top1")
DECISIONS = ("flag", "review", "pass", "error")


class TrainingDataError(BrandsentryError, ValueError):
    """The labelled data cannot train or evaluate a model (one class only, unknown label, no rows)."""


@dataclass(frozen=True)
class ClassifierSettings:
    """The `classifier` config group (configs/classifier/)."""

    kind: str  # hgb | logreg | similarity (the baseline: claimed-brand similarity margin alone)
    candidates: list[str]  # kinds also fitted; the best validation ROC-AUC ships (model_choice)
    calibration: str  # isotonic | sigmoid
    calibration_folds: int  # product-grouped folds whose out-of-fold scores fit the calibration
    target_precision: float
    min_brand_listings: int  # a brand with fewer labelled validation listings uses the global threshold
    review_factor: float  # scores in [factor x threshold, threshold) go to human review
    max_iter: int  # hgb only, as are learning_rate and min_samples_leaf
    learning_rate: float
    min_samples_leaf: int
    threads: int | None  # OpenMP threads while fitting and predicting; None = all cores
    seed: int

    @classmethod
    def from_config(cls, cfg) -> ClassifierSettings:
        return load_settings(cls, cfg, "classifier")

    def __post_init__(self) -> None:
        for kind in (self.kind, *self.candidates):
            if kind not in KINDS:
                raise ConfigError(f"unknown classifier kind {kind!r} (expected one of {list(KINDS)})")
        if self.calibration_folds < 1:
            raise ConfigError(f"calibration_folds must be >= 1, got {self.calibration_folds!r}")
        if self.calibration not in ("isotonic", "sigmoid"):
            raise ConfigError(f"unknown calibration {self.calibration!r} (expected 'isotonic' or 'sigmoid')")
        if not 0.0 < self.target_precision < 1.0:
            raise ConfigError(f"target_precision must be in (0, 1), got {self.target_precision!r}")


def encode_labels(labels: pd.Series | np.ndarray) -> np.ndarray:
    """authentic → 0, counterfeit → 1; anything else is an error naming the value."""
    values = pd.Series(labels).astype(str).str.strip().str.lower()
    unknown = sorted(set(values) - set(LABELS))
    if unknown:
        raise TrainingDataError(f"unknown label value(s) {unknown!r}; expected {LABELS}")
    return (values == "counterfeit").to_numpy(dtype=np.int8)


class SimilarityMargin(BaseEstimator, TransformerMixin):
    """(sim_brand_top1, sim_other_top1) -> one column: the claimed brand's top-1 similarity minus half the
    best other brand's. No claimed-brand neighbour counts as -1, no other brand as 0."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        brand, other = np.nan_to_num(X[:, 0], nan=-1.0), np.nan_to_num(X[:, 1], nan=0.0)
        return (brand - 0.5 * other).reshape(-1, 1)


def _base_estimator(settings: ClassifierSettings):
    if settings.kind == "similarity":
        return make_pipeline(SimilarityMargin(), LogisticRegression(random_state=settings.seed))
    if settings.kind == "hgb":
        return make_pipeline(
            InformativeColumns(),
            HistGradientBoostingClassifier(
                max_iter=settings.max_iter,
                learning_rate=settings.learning_rate,
                min_samples_leaf=settings.min_samples_leaf,
                random_state=settings.seed,
            ),
        )
    return make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=2000, C=1.0, random_state=settings.seed),
    )


def calibration_folds(settings: ClassifierSettings, y: np.ndarray, groups: np.ndarray) -> list | None:
    """Product-grouped, class-stratified folds whose fitting parts all hold both classes (None: too few
    groups to hold any out, calibrate in-sample). Depends on (y, groups) only, so every model fitted on the
    same rows gets the same folds."""
    n_splits = min(settings.calibration_folds, len(np.unique(groups)))
    if n_splits < 2:
        return None
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=settings.seed)
    folds = list(splitter.split(np.zeros((len(y), 1)), y, groups))
    if any(len(np.unique(y[fit_idx])) < 2 for fit_idx, _ in folds):
        return None
    return folds


def _uninformative(column: np.ndarray) -> str | None:
    """Why a column carries nothing to learn: NaN everywhere, or one value everywhere. One value and NaN
    is kept: whether a cue could be computed (a logo found or not) is itself a signal."""
    known = column[~np.isnan(column)]
    if known.size == 0:
        return "NaN"
    if known.size == column.size and np.unique(known).size == 1:
        return f"constant {known[0]:g}"
    return None


def uninformative_features(features: pd.DataFrame, names: Sequence[str]) -> dict[str, str]:
    """Cue -> why no model can learn from it on these rows: NaN, or a single value, on every row."""
    matrix = features[list(names)].to_numpy(dtype=np.float64)
    found = {name: _uninformative(matrix[:, j]) for j, name in enumerate(names)}
    return {
        name: f"{why} on all {len(matrix)} listings it is fitted on" for name, why in found.items() if why
    }


def log_dropped(dropped: dict[str, str]) -> None:
    for name, reason in dropped.items():
        log.info("cue %s dropped from the model: %s", name, reason)


def log_fold_gaps(features: pd.DataFrame, names: Sequence[str], folds: list | None) -> None:
    """Cues a calibration fold's model goes without (uninformative on the rows that fold fits on)."""
    for k, (fit_idx, _) in enumerate(folds or ()):
        gaps = uninformative_features(features.iloc[fit_idx], names)
        for name, reason in gaps.items():
            log.info(
                "cue %s is left out of calibration fold %d of %d only: %s", name, k + 1, len(folds), reason
            )


class InformativeColumns(BaseEstimator, TransformerMixin):
    """Keeps the columns that carry something on the rows it is fitted on (not all NaN, not one value).

    HistGradientBoosting's binning fails on an all-NaN column (scikit-learn 1.9); a calibration fold's
    model may see such a column where the whole training split does not, and then goes without it.
    """

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.keep_ = np.array([_uninformative(X[:, j]) is None for j in range(X.shape[1])], dtype=bool)
        if not self.keep_.any():
            raise TrainingDataError(
                f"none of the {X.shape[1]} cue(s) carries anything over {len(X)} training listings"
            )
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)[:, self.keep_]


def threshold_for_precision(scores: np.ndarray, y: np.ndarray, target: float) -> float:
    """Lowest score threshold whose precision on (scores, y) reaches `target`; 1.0 + eps if none does."""
    if y.sum() == 0:
        return float("inf")
    precision, _, thresholds = precision_recall_curve(y, scores)
    ok = np.flatnonzero(precision[:-1] >= target)
    if ok.size == 0:
        return float(np.nextafter(1.0, 2.0))
    return float(thresholds[ok[0]])


def recall_at_precision(scores: np.ndarray, y: np.ndarray, target: float) -> float:
    """Best recall reachable at precision ≥ target (0 when unreachable)."""
    if y.sum() == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, scores)
    ok = precision >= target
    return float(recall[ok].max()) if ok.any() else 0.0


@dataclass
class CounterfeitClassifier:
    """A fitted, calibrated classifier plus its decision thresholds; pickled into the model bundle."""

    settings: ClassifierSettings
    feature_names: list[str]  # the cues the model reads (uninformative ones dropped at fit)
    model: object = None
    global_threshold: float = 0.5
    brand_thresholds: dict[str, float] = field(default_factory=dict)
    dropped_features: dict[str, str] = field(default_factory=dict)  # cue -> why it was dropped

    def fit(self, features: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> CounterfeitClassifier:
        """Drop uninformative cues, calibrate on out-of-fold scores (grouped folds), refit on every row."""
        if len(np.unique(y)) < 2:
            raise TrainingDataError("training data holds one class only; need authentic and counterfeit")
        self._require_columns(features)
        folds = calibration_folds(self.settings, y, groups)
        # the baseline reads its two cues whatever they hold (SimilarityMargin fills their gaps)
        similarity = self.settings.kind == "similarity"
        dropped = {} if similarity else uninformative_features(features, self.feature_names)
        if len(dropped) == len(self.feature_names):
            raise TrainingDataError(
                "no cue can be learnt from: "
                + "; ".join(f"{name}: {reason}" for name, reason in dropped.items())
            )
        log_dropped(dropped)
        self.dropped_features = {**self.dropped_features, **dropped}
        self.feature_names = [name for name in self.feature_names if name not in dropped]
        X = self._matrix(features)
        with self.threads():
            if folds is None:  # too few groups to hold any out: calibrate in-sample
                base = FrozenEstimator(_base_estimator(self.settings).fit(X, y))
                calibrated = CalibratedClassifierCV(base, method=self.settings.calibration)
            else:
                calibrated = CalibratedClassifierCV(
                    _base_estimator(self.settings), method=self.settings.calibration, cv=folds, ensemble=False
                )
            self.model = calibrated.fit(X, y)
        return self

    def threads(self):
        """OpenMP limited to `settings.threads`: per-tree thread start-up dominates small batches (and the
        cue stage already keeps the cores busy)."""
        return threadpool_limits(limits=self.settings.threads, user_api="openmp")

    def _require_columns(self, features: pd.DataFrame) -> None:
        missing = [name for name in self.feature_names if name not in features.columns]
        if missing:
            raise TrainingDataError(f"feature column(s) missing: {missing}")

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        self._require_columns(features)
        return features[self.feature_names].to_numpy(dtype=np.float64)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability that each row is a counterfeit."""
        if self.model is None:
            raise TrainingDataError("classifier is not fitted")
        with self.threads():
            return self.model.predict_proba(self._matrix(features))[:, 1]

    def choose_thresholds(self, scores: np.ndarray, y: np.ndarray, brands: np.ndarray) -> None:
        """Per-brand thresholds for the target precision on validation data, global fallback."""
        target = self.settings.target_precision
        self.global_threshold = threshold_for_precision(scores, y, target)
        self.brand_thresholds = {}
        for brand in np.unique(brands):
            mask = brands == brand
            if mask.sum() >= self.settings.min_brand_listings and 0 < y[mask].sum() < mask.sum():
                self.brand_thresholds[str(brand)] = threshold_for_precision(scores[mask], y[mask], target)

    def threshold_for(self, brand: str) -> float:
        return self.brand_thresholds.get(str(brand), self.global_threshold)

    def decide(self, scores: np.ndarray, brands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(decision, threshold) per row: flag at or above the threshold, review in the band below it."""
        thresholds = np.array([self.threshold_for(b) for b in brands], dtype=np.float64)
        review_floor = thresholds * self.settings.review_factor
        decisions = np.where(scores >= thresholds, "flag", np.where(scores >= review_floor, "review", "pass"))
        return decisions.astype(object), thresholds


def classification_metrics(
    y: np.ndarray, scores: np.ndarray, brands: np.ndarray | None = None, kinds: np.ndarray | None = None
) -> dict[str, float]:
    """ROC-AUC, PR-AUC and recall at fixed precisions; per brand and per counterfeit kind.

    Per kind: that kind's counterfeits against all authentic listings, so each kind's difficulty shows,
    and (`recall_at_overall_p95`) the share of the kind caught at the score where the whole set reaches
    precision 0.95: how the overall recall at that precision splits over the kinds.
    """
    if len(np.unique(y)) < 2:
        raise TrainingDataError("evaluation data holds one class only")
    metrics = {
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "n": float(len(y)),
        "positives": float(y.sum()),
    }
    for target in (0.90, 0.95, 0.99):
        metrics[f"recall_at_p{round(target * 100)}"] = recall_at_precision(scores, y, target)
    overall_p95 = threshold_for_precision(scores, y, 0.95)
    groups = {"brand": brands, "kind": kinds}
    for prefix, values in groups.items():
        if values is None:
            continue
        values = np.asarray(values).astype(str)
        for value in sorted(set(values[y == 1])):
            # a kind is judged against every authentic listing; a brand against its own listings
            mask = (values == value) | (y == 0) if prefix == "kind" else values == value
            if len(np.unique(y[mask])) < 2:
                continue
            key = f"{prefix}.{value}"
            metrics[f"{key}.roc_auc"] = float(roc_auc_score(y[mask], scores[mask]))
            metrics[f"{key}.recall_at_p95"] = recall_at_precision(scores[mask], y[mask], 0.95)
            if prefix == "kind":
                caught = scores[(values == value) & (y == 1)] >= overall_p95
                metrics[f"{key}.recall_at_overall_p95"] = float(caught.mean())
    return metrics


def decision_metrics(
    decisions: np.ndarray, y: np.ndarray, kinds: np.ndarray | None = None
) -> dict[str, float]:
    """What the thresholds actually do: precision and recall of `flag`, and recall per counterfeit kind."""
    flagged = np.asarray(decisions) == "flag"
    true_flags = int((flagged & (y == 1)).sum())
    metrics = {
        "flag_precision": true_flags / flagged.sum() if flagged.any() else float("nan"),
        "flag_recall": true_flags / y.sum() if y.any() else float("nan"),
        "flag_rate": float(flagged.mean()) if len(flagged) else float("nan"),
    }
    if kinds is not None:
        kinds = np.asarray(kinds).astype(str)
        for kind in sorted(set(kinds[y == 1])):
            mask = (kinds == kind) & (y == 1)
            metrics[f"kind.{kind}.flag_recall"] = float(flagged[mask].mean())
    return {key: float(value) for key, value in metrics.items()}


@dataclass(frozen=True)
class EscalationBand:
    """Cheap probabilities in [low, high] earn the expensive cues (low > high: none does); NaN always does."""

    low: float
    high: float
    reason: str = ""  # how it was chosen, for the training log and bundle.json

    @classmethod
    def everything(cls, reason: str = "every listing") -> EscalationBand:
        return cls(0.0, 1.0, reason)

    @classmethod
    def nothing(cls, reason: str) -> EscalationBand:
        return cls(1.0, 0.0, reason)

    def contains(self, cheap_scores: np.ndarray) -> np.ndarray:
        p = np.asarray(cheap_scores, dtype=float)
        return np.isnan(p) | ((p >= self.low) & (p <= self.high))


def learn_band(
    cheap_scores: np.ndarray,
    full_scores: np.ndarray,
    y: np.ndarray,
    max_escalation: float,
    max_auc_loss: float,
    candidates: int = 41,
) -> EscalationBand:
    """The narrowest band of cheap probabilities whose cascaded ROC-AUC stays within `max_auc_loss` of
    escalating everything, among bands escalating at most `max_escalation` of the rows.

    Chosen on validation, where every cue is known for every row. The band edges are quantiles of the cheap
    scores (at most `candidates` of them), so two numbers are fitted on hundreds of rows, not a curve. When
    no band under the cap reaches the target, the best ROC-AUC under the cap wins and the reason says so.
    """
    cheap_scores, full_scores, y = (np.asarray(a, dtype=float) for a in (cheap_scores, full_scores, y))
    everything = float(roc_auc_score(y, full_scores))
    target = everything - max_auc_loss
    edges = np.unique(np.quantile(cheap_scores, np.linspace(0.0, 1.0, candidates)))
    best: tuple | None = None  # (meets target, -rate, auc, low, high)
    options = [(1.0, 0.0)] + [(lo, hi) for i, lo in enumerate(edges) for hi in edges[i:]]
    for low, high in options:
        band = EscalationBand(float(low), float(high))
        escalated = band.contains(cheap_scores)
        rate = float(escalated.mean())
        if rate > max_escalation:
            continue
        auc = float(roc_auc_score(y, np.where(escalated, full_scores, cheap_scores)))
        key = (auc >= target, -rate if auc >= target else auc, auc if auc >= target else -rate, low, high)
        if best is None or key[:3] > best[:3]:
            best = key
    met, _, _, low, high = best
    band = EscalationBand(float(low), float(high))
    rate = float(band.contains(cheap_scores).mean())
    auc = float(roc_auc_score(y, np.where(band.contains(cheap_scores), full_scores, cheap_scores)))
    verdict = "within" if met else "NOT within"
    reason = (
        f"validation: escalates {rate:.1%} (cap {max_escalation:.0%}) at ROC-AUC {auc:.4f}, {verdict} "
        f"{max_auc_loss} of escalating everything ({everything:.4f})"
    )
    return EscalationBand(band.low, band.high, reason)


@dataclass
class CascadeClassifier:
    """The cheap model (cheap cues only) and the full model (every cue) behind one cascaded score.

    A listing is scored by the cheap model; where its probability lies in the escalation `band` (learned on
    validation, `learn_band`), the logo and OCR cues are computed and the full model's probability replaces
    it. The decision thresholds are chosen
    on, and apply to, that cascaded score; they live on the full model. Without expensive cues (an ablation
    that disables logo and text) both models are one and the same and the cascade never escalates.
    """

    cheap: CounterfeitClassifier
    full: CounterfeitClassifier
    band: EscalationBand = field(default_factory=EscalationBand.everything)

    @classmethod
    def fit(
        cls,
        settings: ClassifierSettings,
        cheap_names: list[str],
        all_names: list[str],
        features: pd.DataFrame,
        y: np.ndarray,
        groups: np.ndarray,
    ) -> CascadeClassifier:
        """Fit both models on the same rows (whose expensive cues were computed for all).

        Uninformative cues are found once for both models (they share the calibration folds); when every
        expensive cue is dropped the cascade is the cheap model alone and never escalates.
        """
        if not cheap_names:
            raise TrainingDataError("no cheap cue is enabled: the cascade's first model has no features")
        dropped = uninformative_features(features, all_names)
        cheap_kept = [name for name in cheap_names if name not in dropped]
        if not cheap_kept:
            raise TrainingDataError(
                "no cheap cue can be learnt from, so the cascade's first model has no features: "
                + "; ".join(f"{name}: {dropped[name]}" for name in cheap_names)
            )
        log_dropped(dropped)
        all_kept = [name for name in all_names if name not in dropped]
        log_fold_gaps(features, all_kept, calibration_folds(settings, y, groups))

        cheap = CounterfeitClassifier(settings, cheap_kept).fit(features, y, groups)
        # no expensive cue left (or none enabled): one model, no escalation
        full = (
            cheap
            if all_kept == cheap_kept
            else CounterfeitClassifier(settings, all_kept).fit(features, y, groups)
        )
        full.dropped_features = dict(dropped)  # the full model answers for the cascade
        return cls(cheap, full)

    @classmethod
    def similarity_baseline(
        cls, settings: ClassifierSettings, features: pd.DataFrame, y: np.ndarray, groups: np.ndarray
    ) -> CascadeClassifier:
        """The baseline as a cascade of one cheap model that never escalates."""
        model = CounterfeitClassifier(settings, list(BASELINE_FEATURES)).fit(features, y, groups)
        unread = [name for name in features.columns if name not in BASELINE_FEATURES]
        model.dropped_features = dict.fromkeys(unread, "not an input of the similarity baseline")
        return cls(model, model, EscalationBand.nothing("the similarity baseline reads no expensive cue"))

    @property
    def has_expensive(self) -> bool:
        return self.full is not self.cheap

    @property
    def feature_names(self) -> list[str]:
        """Every cue either model reads: what scoring must compute."""
        return list(dict.fromkeys([*self.cheap.feature_names, *self.full.feature_names]))

    @property
    def dropped_features(self) -> dict[str, str]:
        return dict(self.full.dropped_features)

    def learn_band(self, features: pd.DataFrame, y: np.ndarray, max_escalation: float, max_auc_loss: float):
        """Fit the escalation band on labelled rows whose every cue is known (the validation split)."""
        if not self.has_expensive:
            self.band = EscalationBand.nothing("no expensive cue in the model")
        else:
            cheap, full = self.cheap.predict_proba(features), self.full.predict_proba(features)
            self.band = learn_band(cheap, full, y, max_escalation, max_auc_loss)
        log.info("cascade band [%.3f, %.3f]: %s", self.band.low, self.band.high, self.band.reason)
        return self.band

    def escalate(self, cheap_scores: np.ndarray, enabled: bool = True) -> np.ndarray:
        """Rows whose cheap probability earns the expensive cues: inside the band, or all when the cascade
        is off (`cues.cascade.enabled=false`)."""
        if not self.has_expensive:
            return np.zeros(len(cheap_scores), dtype=bool)
        if not enabled:
            return np.ones(len(cheap_scores), dtype=bool)
        return self.band.contains(cheap_scores)

    def triage(self, features: pd.DataFrame, enabled: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(cheap probability, escalated) per row: the cascade's first stage, which reads the cheap cues only."""
        cheap_scores = self.cheap.predict_proba(features)
        return cheap_scores, self.escalate(cheap_scores, enabled)

    def combine(self, cheap_scores: np.ndarray, escalated: np.ndarray, features: pd.DataFrame) -> np.ndarray:
        """The cascaded score: the cheap probability, replaced by the full model's on the escalated rows.

        The one place the cascade's rule is written (scoring, training and the evidence replay call it).
        `features` is row-aligned with `cheap_scores` and needs the expensive cues of the escalated rows
        only, so a scorer computes those after `triage`, for those rows alone.
        """
        scores = np.array(cheap_scores, copy=True)
        escalated = np.asarray(escalated, dtype=bool)
        if escalated.any():
            scores[escalated] = self.full.predict_proba(features.loc[escalated])
        return scores

    def cascaded_scores(self, features: pd.DataFrame, enabled: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(score, escalated) for rows whose every cue is known, exactly as the staged scorer would score them."""
        cheap_scores, escalated = self.triage(features, enabled)
        return self.combine(cheap_scores, escalated, features), escalated

    def choose_thresholds(self, scores: np.ndarray, y: np.ndarray, brands: np.ndarray) -> None:
        self.full.choose_thresholds(scores, y, brands)

    def decide(self, scores: np.ndarray, brands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.full.decide(scores, brands)

    @property
    def review_factor(self) -> float:
        """Scores in [review_factor x threshold, threshold) go to human review."""
        return self.full.settings.review_factor

    def thresholds(self) -> dict:
        """The decision rule as plain data (for thresholds.json and the MLflow table)."""
        return {
            "target_precision": self.full.settings.target_precision,
            "review_factor": self.full.settings.review_factor,
            "global": self.full.global_threshold,
            "brands": dict(sorted(self.full.brand_thresholds.items())),
        }
