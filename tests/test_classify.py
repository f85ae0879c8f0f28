import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from brandsentry.classify import (
    CascadeClassifier,
    ClassifierSettings,
    CounterfeitClassifier,
    EscalationBand,
    InformativeColumns,
    TrainingDataError,
    calibration_folds,
    classification_metrics,
    decision_metrics,
    encode_labels,
    learn_band,
    threshold_for_precision,
)
from brandsentry.config import load_config
from brandsentry.errors import ConfigError
from brandsentry.settings import default_settings


def classifier_settings(**changes) -> ClassifierSettings:
    """configs/classifier/hgb.yaml with `changes` (as tests set them, e.g. kind=logreg keeps isotonic)."""
    return default_settings(ClassifierSettings, "classifier", **changes)


def make_listings(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Two informative features (one with missing values), one noise feature, 20 product groups."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.int8)
    similarity = rng.normal(0.8 - 0.25 * y, 0.08)
    inliers = rng.poisson(30 - 22 * y).astype(float)
    inliers[rng.random(n) < 0.2] = np.nan
    features = pd.DataFrame({"similarity": similarity, "logo_inliers": inliers, "noise": rng.normal(size=n)})
    groups = rng.integers(0, 20, n)
    brands = np.array(["alpha", "beta"])[rng.integers(0, 2, n)]
    return features, y, groups, brands


@pytest.mark.parametrize("kind", ["hgb", "logreg"])
def test_classifier_beats_dummy_and_meets_target_precision(kind):
    settings = classifier_settings(kind=kind, target_precision=0.9, min_brand_listings=50)
    X, y, groups, _ = make_listings(1200, seed=1)
    model = CounterfeitClassifier(settings, list(X.columns)).fit(X, y, groups)
    Xv, yv, _, brands_v = make_listings(800, seed=2)
    scores_v = model.predict_proba(Xv)
    assert ((scores_v >= 0) & (scores_v <= 1)).all()
    metrics = classification_metrics(yv, scores_v, brands_v)
    assert metrics["roc_auc"] > 0.9  # a dummy scores 0.5
    assert set(model.brand_thresholds) == set()
    model.choose_thresholds(scores_v, yv, brands_v)
    assert set(model.brand_thresholds) == {"alpha", "beta"}
    decisions, thresholds = model.decide(scores_v, brands_v)
    flagged = decisions == "flag"
    assert (yv[flagged] == 1).mean() >= 0.9
    assert set(np.unique(decisions)) <= {"flag", "review", "pass"}
    assert np.all(thresholds == [model.threshold_for(b) for b in brands_v])


def test_calibrated_probabilities_track_the_observed_rate():
    X, y, groups, _ = make_listings(3000, seed=3)
    model = CounterfeitClassifier(classifier_settings(), list(X.columns)).fit(X, y, groups)
    Xt, yt, _, _ = make_listings(3000, seed=4)
    scores = model.predict_proba(Xt)
    assert abs(scores.mean() - yt.mean()) < 0.05
    high = scores > 0.8
    assert yt[high].mean() > 0.8


def test_brand_with_few_listings_falls_back_to_global_threshold():
    X, y, groups, _ = make_listings(600, seed=5)
    model = CounterfeitClassifier(classifier_settings(min_brand_listings=30), list(X.columns)).fit(
        X, y, groups
    )
    brands = np.array(["big"] * 590 + ["tiny"] * 10)
    model.choose_thresholds(model.predict_proba(X), y, brands)
    assert "tiny" not in model.brand_thresholds
    assert model.threshold_for("tiny") == model.global_threshold
    assert model.threshold_for("never-seen") == model.global_threshold


def test_threshold_for_precision_is_exact_on_a_hand_example():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 0, 1, 0, 1, 1])
    assert threshold_for_precision(scores, y, 0.99) == 0.5
    assert threshold_for_precision(scores, y, 0.7) == 0.3


def test_bad_labels_and_single_class_are_refused():
    with pytest.raises(TrainingDataError, match="fake"):
        encode_labels(["authentic", "fake"])
    X, _, groups, _ = make_listings(50, seed=6)
    with pytest.raises(TrainingDataError, match="one class"):
        CounterfeitClassifier(classifier_settings(), list(X.columns)).fit(X, np.zeros(50, np.int8), groups)
    with pytest.raises(TrainingDataError, match="missing"):
        model = CounterfeitClassifier(classifier_settings(), ["absent"])
        model.fit(X, (np.arange(50) % 2).astype(np.int8), groups)


def test_settings_from_config_validate_names():
    cfg = load_config(["classifier.kind=logreg", "classifier.target_precision=0.9"], config_name="train")
    settings = ClassifierSettings.from_config(cfg.classifier)
    assert settings.kind == "logreg" and settings.target_precision == 0.9
    assert settings.seed == cfg.seed
    values = OmegaConf.to_container(cfg.classifier, resolve=True)
    with pytest.raises(ConfigError, match="'forest'"):
        ClassifierSettings.from_config({**values, "kind": "forest"})
    with pytest.raises(ConfigError, match=r"classifier\.max_iters \(did you mean classifier\.max_iter\?\)"):
        ClassifierSettings.from_config({**values, "max_iters": 10})


def test_decision_metrics_per_kind():
    decisions = np.array(["flag", "pass", "flag", "review", "flag"], dtype=object)
    y = np.array([1, 1, 0, 1, 1])
    kinds = np.array(["a", "a", "", "b", "b"])
    metrics = decision_metrics(decisions, y, kinds)
    assert metrics["flag_precision"] == pytest.approx(2 / 3)
    assert metrics["flag_recall"] == pytest.approx(2 / 4)
    assert metrics["kind.a.flag_recall"] == 0.5
    assert metrics["kind.b.flag_recall"] == 0.5


def test_per_kind_metrics_on_a_hand_example():
    # 20 authentic listings score 0..0.19; kind a sits above all of them, kind b straddles the top ones
    authentic = np.arange(20) / 100
    scores = np.r_[authentic, [0.9, 0.8, 0.7, 0.6], [0.185, 0.175, 0.5, 0.05]]
    y = np.r_[np.zeros(20), np.ones(8)].astype(np.int8)
    kinds = np.array([""] * 20 + ["a"] * 4 + ["b"] * 4)
    metrics = classification_metrics(y, scores, kinds=kinds)
    assert metrics["kind.a.roc_auc"] == 1.0 and metrics["kind.a.recall_at_p95"] == 1.0
    assert metrics["kind.b.recall_at_p95"] == 0.25  # only 0.5 beats every authentic listing
    # overall, precision 0.95 is first reached at 0.5 (5 of 5): a is all caught there, b one in four
    assert metrics["recall_at_p95"] == 5 / 8
    assert metrics["kind.a.recall_at_overall_p95"] == 1.0
    assert metrics["kind.b.recall_at_overall_p95"] == 0.25


# ---- any cue matrix trains ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hgb", "logreg"])
@pytest.mark.parametrize(
    "column",
    [np.full(300, np.nan), np.zeros(300)],
    ids=["all_nan", "constant"],
)
def test_an_uninformative_cue_is_dropped_by_name_and_scoring_reads_the_rest(kind, column, caplog):
    X, y, groups, _ = make_listings(300, seed=5)
    X["seller_known"] = column
    with caplog.at_level("INFO", logger="brandsentry.classify"):
        model = CounterfeitClassifier(classifier_settings(kind=kind), list(X.columns)).fit(X, y, groups)
    assert model.feature_names == ["similarity", "logo_inliers", "noise"]
    assert "training listings" not in model.dropped_features["seller_known"]  # says what it is fitted on
    assert "300 listings" in model.dropped_features["seller_known"]
    assert [r.getMessage() for r in caplog.records if "seller_known" in r.getMessage()] == [
        f"cue seller_known dropped from the model: {model.dropped_features['seller_known']}"
    ]
    # scoring frames carry every computed column; the model reads exactly its own
    Xt, yt, _, _ = make_listings(300, seed=6)
    Xt["seller_known"] = 0.5
    assert classification_metrics(yt, model.predict_proba(Xt))["roc_auc"] > 0.9


def test_a_cue_that_is_one_value_or_missing_is_kept_because_missingness_is_a_signal():
    X, y, groups, _ = make_listings(300, seed=10)
    X["logo_found"] = np.where(y == 1, np.nan, 1.0)  # the logo is never found on counterfeits
    model = CounterfeitClassifier(classifier_settings(), ["noise", "logo_found"]).fit(X, y, groups)
    assert model.feature_names == ["noise", "logo_found"] and not model.dropped_features
    assert classification_metrics(y, model.predict_proba(X))["roc_auc"] > 0.95


def test_a_cue_missing_in_one_calibration_fold_only_is_kept_for_the_final_model(caplog):
    X, y, groups, _ = make_listings(600, seed=7)
    settings = classifier_settings(calibration_folds=3)
    folds = calibration_folds(settings, y, groups)
    # informative everywhere except on the rows one fold's model is fitted on, where it is NaN
    fold_rows = np.zeros(len(y), dtype=bool)
    fold_rows[folds[0][0]] = True
    X["logo_score"] = np.where(fold_rows, np.nan, y + np.random.default_rng(0).normal(0, 0.3, len(y)))
    with caplog.at_level("INFO", logger="brandsentry.classify"):
        cascade = CascadeClassifier.fit(settings, ["similarity", "noise"], list(X.columns), X, y, groups)
    assert "logo_score" in cascade.full.feature_names and not cascade.dropped_features
    assert any(
        "logo_score is left out of calibration fold 1 of 3 only" in r.getMessage() for r in caplog.records
    )
    assert np.isfinite(cascade.full.predict_proba(X)).all()


def test_a_cascade_whose_expensive_cues_are_all_dropped_never_escalates():
    X, y, groups, _ = make_listings(300, seed=8)
    X["logo_inliers_x"], X["ocr_match"] = np.nan, 1.0
    cascade = CascadeClassifier.fit(
        classifier_settings(), ["similarity", "logo_inliers", "noise"], list(X.columns), X, y, groups
    )
    assert not cascade.has_expensive and set(cascade.dropped_features) == {"logo_inliers_x", "ocr_match"}
    scores, escalated = cascade.cascaded_scores(X, lambda p: True)
    assert not escalated.any() and np.isfinite(scores).all()


def uncertain_middle(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cheap score that is sure at both ends and a coin toss in the middle, which the full score resolves."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    cheap = np.clip(np.where(y == 1, rng.normal(0.75, 0.2, n), rng.normal(0.25, 0.2, n)), 0, 1)
    full = np.where((cheap > 0.4) & (cheap < 0.6), y * 0.8 + rng.normal(0.1, 0.05, n), cheap)
    return cheap, full, y


def test_the_learned_band_escalates_the_uncertain_middle_only_and_keeps_the_roc_auc():
    cheap, full, y = uncertain_middle(600, seed=1)
    band = learn_band(cheap, full, y, max_escalation=0.25, max_auc_loss=0.01)
    escalated = band.contains(cheap)
    assert 0.0 < escalated.mean() <= 0.25
    everything = roc_auc_score(y, full)
    assert roc_auc_score(y, np.where(escalated, full, cheap)) >= everything - 0.01
    assert roc_auc_score(y, cheap) < everything - 0.01  # the band matters: the cheap score alone is worse
    assert band.low > 0.2 and band.high < 0.8 and "within 0.01" in band.reason
    assert np.isnan(cheap).sum() == 0 and band.contains(np.array([np.nan])).all()


def test_a_full_model_that_adds_nothing_gets_an_empty_band():
    cheap, _, y = uncertain_middle(400, seed=2)
    band = learn_band(cheap, cheap, y, max_escalation=0.25, max_auc_loss=0.01)
    assert not band.contains(cheap).any() and band.low > band.high


def test_when_no_band_under_the_cap_reaches_the_target_the_best_one_under_it_wins_and_says_so():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.5).astype(int)
    cheap = rng.random(500)  # useless everywhere, so the full score is needed on every row
    full = y * 0.6 + rng.random(500) * 0.4
    band = learn_band(cheap, full, y, max_escalation=0.2, max_auc_loss=0.01)
    rate = band.contains(cheap).mean()
    assert 0.1 < rate <= 0.2 and "NOT within" in band.reason


def test_the_cascade_applies_its_band_and_escalates_everything_when_disabled():
    X, y, groups, _ = make_listings(300, seed=4)
    cascade = CascadeClassifier.fit(classifier_settings(), ["similarity"], list(X.columns), X, y, groups)
    cascade.band = EscalationBand(0.3, 0.6)
    cheap, escalated = cascade.triage(X)
    np.testing.assert_array_equal(escalated, (cheap >= 0.3) & (cheap <= 0.6))
    assert cascade.triage(X, enabled=False)[1].all()
    band = cascade.learn_band(X, y, max_escalation=0.25, max_auc_loss=0.01)
    assert cascade.band is band and band.contains(cascade.cheap.predict_proba(X)).mean() <= 0.25


def test_no_learnable_cue_is_an_error_naming_each_cue_and_why():
    X, y, groups, _ = make_listings(100, seed=9)
    X = pd.DataFrame({"a": np.nan, "b": 2.0}, index=X.index)
    with pytest.raises(TrainingDataError, match=r"a: NaN on all 100 .*b: constant 2 on all 100"):
        CounterfeitClassifier(classifier_settings(), ["a", "b"]).fit(X, y, groups)
    with pytest.raises(TrainingDataError, match="no cheap cue can be learnt from"):
        CascadeClassifier.fit(classifier_settings(), ["a"], ["a", "b"], X, y, groups)


def test_informative_columns_keeps_only_columns_that_vary():
    X = np.array([[1.0, np.nan, 3.0, 1.0], [1.0, np.nan, np.nan, 2.0], [1.0, np.nan, 3.0, np.nan]])
    selector = InformativeColumns().fit(X)
    assert selector.keep_.tolist() == [False, False, True, True]
    assert selector.transform(X).shape == (3, 2)
    with pytest.raises(TrainingDataError, match="none of the 2 cue"):
        InformativeColumns().fit(X[:, :2])


# --- which model ships ------------------------------------------------------------------------------------
def choice_listings(n: int, seed: int, trees_win: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The similarity margin separates the classes a little; with `trees_win`, an XOR of two cues that only
    trees can read separates them well, else twelve noise cues invite overfitting."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    frame = pd.DataFrame({"sim_brand_top1": rng.normal(0.8 - 0.08 * y, 0.08),
                          "sim_other_top1": rng.normal(0.5, 0.05, n)})  # fmt: skip
    if trees_win:
        a = rng.integers(0, 2, n)
        frame["a"], frame["b"] = a + rng.normal(0, 0.1, n), (a ^ y) + rng.normal(0, 0.1, n)
    else:
        for i in range(12):
            frame[f"noise{i}"] = rng.normal(size=n)
    return frame, y, rng.integers(0, 30, n)


@pytest.mark.parametrize("trees_win", [True, False])
def test_the_shipped_model_is_never_worse_than_the_similarity_baseline_on_validation(trees_win):
    from brandsentry.model_choice import choose_model

    X, y, groups = choice_listings(900, seed=11, trees_win=trees_win)
    train, validation = slice(0, 300), slice(300, 900)
    names = list(X.columns)
    choice = choose_model(
        classifier_settings(min_samples_leaf=5),
        names,
        names,
        (X[train].reset_index(drop=True), y[train], groups[train]),
        (X[validation].reset_index(drop=True), y[validation]),
        max_escalation=0.25,
        max_auc_loss=0.01,
    )
    aucs = choice.validation_roc_auc
    assert set(aucs) == {"hgb", "logreg", "similarity"}
    assert aucs[choice.kind] == max(aucs.values()) >= aucs["similarity"]
    if trees_win:
        assert choice.kind == "hgb" and aucs["hgb"] > aucs["logreg"] + 0.1
    else:
        assert choice.kind != "hgb" and "instead of the configured hgb" in choice.reason
    shipped, _ = choice.model.cascaded_scores(X[validation].reset_index(drop=True))
    assert roc_auc_score(y[validation], shipped) == pytest.approx(aucs[choice.kind])


def test_the_similarity_baseline_is_skipped_when_its_cues_are_not_computed():
    from brandsentry.model_choice import choose_model

    X, y, groups, _ = make_listings(400, seed=12)
    names = list(X.columns)
    part = (X[:200].reset_index(drop=True), y[:200], groups[:200])
    choice = choose_model(classifier_settings(min_samples_leaf=5), names, names, part,
                          (X[200:].reset_index(drop=True), y[200:]), 0.25, 0.01)  # fmt: skip
    assert set(choice.validation_roc_auc) == {"hgb", "logreg"}


def test_an_unknown_candidate_kind_is_refused_naming_it():
    with pytest.raises(ConfigError, match="'forest'"):
        classifier_settings(candidates=["logreg", "forest"])


def test_the_auc_standard_error_matches_hanley_and_mcneil():
    from brandsentry.model_choice import auc_standard_error

    # their table: A = 0.9 on 50 positives and 50 negatives -> 0.032
    assert auc_standard_error(0.9, 50, 50) == pytest.approx(0.0321, abs=5e-4)
    assert auc_standard_error(0.9, 500, 500) < auc_standard_error(0.9, 50, 50)
