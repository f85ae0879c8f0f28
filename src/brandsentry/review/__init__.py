"""Review: scoring runs in MLflow with drift and evidence pages, and rescans after reference changes.

- `runs`: `log_scoring_run` makes a finished scoring run an MLflow run of the `scoring` experiment.
- `drift`: PSI of the score and top-1 similarity against the trailing daily runs, overall and per brand.
- `evidence`: the evidence page of the review queue and the flags, with attributions and verdict buttons.
- `export`: every listing of a scoring run as Label Studio tasks or a FiftyOne dataset folder.
- `attribution`: which cues moved a listing's score (exact Shapley values), replayed on the bundle's cascade.
- `rescan`: re-score a brand's recent listings against its current references; report changed decisions.
- `tables`: decisions against ground truth per counterfeit kind (labelled days, the demo).

The ledger of scored listings (`brandsentry.ledger`) and reviewer verdicts (`brandsentry.feedback`) live
earlier in the stage order, so that training can use them.
"""

from brandsentry.review.attribution import CascadePredictor, cue_players, shapley_attributions
from brandsentry.review.drift import DriftCheck, DriftReport, compare_histograms, psi, run_histograms
from brandsentry.review.evidence import EvidenceItem, EvidencePage, build_evidence_page
from brandsentry.review.rescan import RescanReport, rescan, utc_date
from brandsentry.review.runs import ScoringRunLog, load_bundle_for, log_scoring_run, run_metrics
from brandsentry.review.settings import DriftSettings, ReviewError, ReviewSettings
from brandsentry.review.tables import format_table, truth_table

__all__ = [
    "CascadePredictor",
    "DriftCheck",
    "DriftReport",
    "DriftSettings",
    "EvidenceItem",
    "EvidencePage",
    "RescanReport",
    "ReviewError",
    "ReviewSettings",
    "ScoringRunLog",
    "build_evidence_page",
    "compare_histograms",
    "cue_players",
    "format_table",
    "load_bundle_for",
    "log_scoring_run",
    "psi",
    "rescan",
    "run_histograms",
    "run_metrics",
    "shapley_attributions",
    "truth_table",
    "utc_date",
]
