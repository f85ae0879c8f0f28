"""Cue attributions: which cues moved a flagged listing's score, measured on the model that scored it.

Exact Shapley values against a baseline listing (every cue at the run's median): each player's average
marginal effect over all coalitions of the other players, so the contributions of a listing sum to its
score minus the baseline's score, and a cue that matters only together with others (a re-uploaded photo
is both `copy_reused` and a near-1 `sim_top1`; a tree reads either) still gets its share, where replacing
one cue at a time credits neither. The evidence page shows them only once the bundle's cascade replays
the run's recorded scores (otherwise they would explain another model's decisions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from brandsentry.cues.compute import GROUPS
from brandsentry.review.settings import ReviewError

if TYPE_CHECKING:  # the classifier (scikit-learn) is only reached through a loaded bundle
    from brandsentry.classify import CascadeClassifier


@dataclass(frozen=True)
class Player:
    """Cues that enter or leave a coalition together: one cue, or a whole cue group."""

    label: str
    cues: tuple[str, ...]


def cue_players(names: Sequence[str], max_players: int) -> tuple[Player, ...]:
    """Each cue its own player while at most `max_players`; beyond that the largest cue groups play whole.

    Groups are the cue groups of `cues.compute` (a cue outside them is a group of its own). Starting from
    one player per group, the smallest groups are split into single cues while the count stays within
    `max_players`, so the few seller and quality cues keep their own credit next to, say, "similarity".
    """
    group_of = {cue: group.name for group in GROUPS for cue in group.features}
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_of.get(name, name), []).append(name)
    if len(groups) > max_players:
        raise ReviewError(
            f"the model reads {len(groups)} cue groups, more than review.evidence.attribution_players="
            f"{max_players}: raise it to at least {len(groups)}"
        )
    split, count = set(), len(groups)
    for group, cues in sorted(groups.items(), key=lambda item: len(item[1])):
        if len(cues) > 1 and count - 1 + len(cues) <= max_players:
            split.add(group)
            count += len(cues) - 1
    players = []
    for group, cues in groups.items():
        if group in split or len(cues) == 1:
            players.extend(Player(cue, (cue,)) for cue in cues)
        else:
            players.append(Player(f"{group}: {', '.join(cues)}", tuple(cues)))
    return tuple(players)


def shapley_attributions(
    predict: Callable[[pd.DataFrame], np.ndarray],
    rows: pd.DataFrame,
    baseline: pd.Series,
    players: Sequence[Player],
) -> tuple[pd.DataFrame, pd.Series]:
    """(contribution of each player per row, baseline score per row): exact Shapley values.

    A coalition's value is the score of the row with the cues of the players outside it set to `baseline`;
    all 2**len(players) coalitions are scored in one `predict` call, so keep the players few. Each row's
    contributions sum to score(row) - score(baseline).
    """
    labels = [p.label for p in players]
    if rows.empty:
        return pd.DataFrame(columns=labels, dtype=np.float64), pd.Series(dtype=np.float64)
    names = [cue for p in players for cue in p.cues]
    n = len(players)
    coalitions = np.arange(2**n)
    member = ((coalitions[:, None] >> np.arange(n)) & 1).astype(bool)  # (coalition, player)
    owner = np.repeat(np.arange(n), [len(p.cues) for p in players])  # column -> its player
    values = rows[names].to_numpy(np.float64)
    base = baseline[names].to_numpy(np.float64)
    grid = np.where(member[None, :, owner], values[:, None, :], base[None, None, :])
    scores = np.asarray(
        predict(pd.DataFrame(grid.reshape(-1, len(names)), columns=names)), dtype=np.float64
    ).reshape(len(rows), 2**n)
    size = member.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    out = np.empty((len(rows), n))
    for j in range(n):
        without = coalitions[~member[:, j]]
        out[:, j] = (scores[:, without | (1 << j)] - scores[:, without]) @ weight[size[without]]
    return pd.DataFrame(out, columns=labels, index=rows.index), pd.Series(scores[:, 0], index=rows.index)


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

    def attributions(
        self, rows: pd.DataFrame, escalated: np.ndarray, baseline: pd.Series, max_players: int
    ) -> tuple[pd.DataFrame, pd.Series]:
        """(contributions by player label, NaN for players of the other model; baseline score), per row."""
        escalated = np.asarray(escalated, dtype=bool)
        parts, bases = [], []
        for mask, model in ((~escalated, self.model.cheap), (escalated, self.model.full)):
            if mask.any():
                players = cue_players(list(model.feature_names), max_players)
                part, base = shapley_attributions(model.predict_proba, rows.loc[mask], baseline, players)
                parts.append(part)
                bases.append(base)
        return pd.concat(parts).reindex(rows.index), pd.concat(bases).reindex(rows.index)


def page_attributions(
    predictor: CascadePredictor, results, chosen, ok, max_players: int
) -> tuple[pd.DataFrame | None, pd.Series | None, str]:
    """(contributions, baseline scores, how they were computed) of the chosen rows, only when the model
    demonstrably reproduces the run's scores."""
    names = list(predictor.full_names)
    missing = sorted(set(names) - set(results.columns))
    if missing:
        return None, None, f"results lack the model's features {missing}: no attributions"
    rows = chosen[names].astype(np.float64)
    escalated = chosen["escalated"].fillna(False).astype(bool).to_numpy()
    replayed = predictor.scores(rows, escalated)
    recorded = chosen["score"].to_numpy(np.float64)
    if not np.allclose(replayed, recorded, atol=1e-6, equal_nan=True):
        worst = float(np.nanmax(np.abs(replayed - recorded)))
        return (
            None,
            None,
            f"the given model does not reproduce the run's scores (off by up to {worst:.3g}): no attributions",
        )
    baseline = ok[names].astype(np.float64).median(skipna=True)
    contributions, base = predictor.attributions(rows, escalated, baseline, max_players)
    text = (
        "Shapley contributions: score = baseline score (every cue at the run's median) + the sum of the "
        "contributions, each a cue's average effect over all combinations of the other cues, by the model "
        f"that scored the listing; past {max_players} cues the largest cue groups play as one each"
    )
    return contributions, base, text
