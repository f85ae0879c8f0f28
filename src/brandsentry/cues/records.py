"""The hand-offs in and out of the cue stage: a listing's `Neighbours` and its `CueResult`."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def same_name(a: str | None, b: str | None) -> bool:
    """Brand/product names from sellers and from the catalog differ in case and stray spaces only."""
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


@dataclass(frozen=True)
class Neighbours:
    """A listing's nearest authentic references, as the index search returned them (best first)."""

    ref_ids: tuple[int, ...]
    similarities: tuple[float, ...]
    brands: tuple[str, ...]
    products: tuple[str | None, ...]

    def __post_init__(self):
        lengths = {len(self.ref_ids), len(self.similarities), len(self.brands), len(self.products)}
        if len(lengths) != 1:
            raise ValueError(
                f"neighbour fields differ in length: ref_ids {len(self.ref_ids)}, similarities "
                f"{len(self.similarities)}, brands {len(self.brands)}, products {len(self.products)}"
            )
        object.__setattr__(self, "ref_ids", tuple(int(i) for i in self.ref_ids))
        object.__setattr__(self, "similarities", tuple(float(s) for s in self.similarities))
        object.__setattr__(self, "brands", tuple(self.brands))
        object.__setattr__(self, "products", tuple(self.products))

    @classmethod
    def from_search(
        cls,
        ids: Iterable[int],
        similarities: Iterable[float],
        brand_of: Mapping[int, str],
        product_of: Mapping[int, str | None],
    ) -> Neighbours:
        """One row of a FAISS search; the -1 ids FAISS pads short result lists with are dropped."""
        rows = [(int(i), float(s)) for i, s in zip(ids, similarities, strict=True) if int(i) >= 0]
        return cls(
            ref_ids=tuple(i for i, _ in rows),
            similarities=tuple(s for _, s in rows),
            brands=tuple(brand_of[i] for i, _ in rows),
            products=tuple(product_of.get(i) for i, _ in rows),
        )

    def __len__(self) -> int:
        return len(self.ref_ids)

    def ranked(self) -> np.ndarray:
        """Positions ordered best first, whatever order the search returned them in (ties keep order)."""
        return np.argsort(-np.asarray(self.similarities, dtype=np.float64), kind="stable")

    def of_brand(self, brand: str | None, product: str | None = None) -> list[int]:
        """Positions (best first) of the neighbours of `brand` (and `product` when given)."""
        return [
            int(p)
            for p in self.ranked()
            if same_name(self.brands[p], brand) and (product is None or same_name(self.products[p], product))
        ]

    def of_claim(self, brand: str, product: str | None) -> list[int]:
        """The claimed product's neighbours when there are any, else the claimed brand's (best first)."""
        return (self.of_brand(brand, product) if product else []) or self.of_brand(brand)


@dataclass(frozen=True)
class CueResult:
    """Named cue values for one listing: NaN where a cue could not be computed, with the reason why.

    `evidence` holds what a reviewer needs to see (logo box and matched points, OCR lines, the reference
    compared against) in JSON-friendly types; `timings_ms` the cost of each cue group; `failures` the cue
    groups that raised, with the exception's type (their columns are NaN with the message as reason).
    """

    values: Mapping[str, float]
    reasons: Mapping[str, str] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        values = {name: float(value) for name, value in self.values.items()}
        unexplained = [
            name for name, value in values.items() if math.isnan(value) and name not in self.reasons
        ]
        if unexplained:
            raise ValueError(f"cue values {unexplained} are NaN without a reason")
        stray = [name for name in self.reasons if not math.isnan(values.get(name, math.nan))]
        if stray:
            raise ValueError(f"reasons given for cue values that are not NaN: {stray}")
        object.__setattr__(self, "values", values)

    @classmethod
    def missing(cls, names: Sequence[str], reason: str, **evidence: Any) -> CueResult:
        return cls({name: math.nan for name in names}, {name: reason for name in names}, evidence)

    def merged(self, other: CueResult) -> CueResult:
        """Both results in one; `other` wins on a name present in both."""
        reasons = {k: v for k, v in self.reasons.items() if k not in other.values}
        return CueResult(
            {**self.values, **other.values},
            {**reasons, **other.reasons},
            {**self.evidence, **other.evidence},
            {**self.timings_ms, **other.timings_ms},
            {**self.failures, **other.failures},
        )

    def row(self, names: Sequence[str]) -> np.ndarray:
        """The values in `names` order (a classifier row); a name this result lacks is an error."""
        absent = [name for name in names if name not in self.values]
        if absent:
            raise KeyError(f"cue result has no values for {absent}")
        return np.array([self.values[name] for name in names], dtype=np.float64)


class ReferenceImages:
    """`reference_lookup` memoised for one listing; a reference that cannot be had is noted, not raised.

    The lookup belongs to the caller (catalog + image store, a cache, a test dict); any failure of it
    is that reference's problem only, so it is caught here and reported as the cue's reason. A lookup
    with a `memo` attribute (a dict-like shared by every listing it serves, e.g. `ReferenceStore`) also
    keeps what cues derive from a reference image (`derived`), so each reference's statistics are computed
    once per scoring process instead of once per listing that matches it.
    """

    def __init__(self, lookup: Callable[[int], np.ndarray]):
        self._lookup = lookup
        self._images: dict[int, np.ndarray | None] = {}
        self.failures: dict[int, str] = {}

    def get(self, ref_id: int) -> np.ndarray | None:
        if ref_id not in self._images:
            try:
                image = np.asarray(self._lookup(ref_id))
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    raise ValueError(f"expected HxWx3 uint8, got {image.shape} {image.dtype}")
                self._images[ref_id] = image
            except Exception as exc:  # batch edge: one unavailable reference must not fail the listing
                self._images[ref_id] = None
                self.failures[ref_id] = f"{type(exc).__name__}: {exc}"
        return self._images[ref_id]

    def derived(self, ref_id: int, key: Hashable, compute: Callable[[np.ndarray], Any]) -> Any:
        """`compute(image of ref_id)`, memoised under (ref_id, key) by the lookup's `memo` when it has one;
        None when the image cannot be had (the reason is in `failures`). `key` must name everything
        `compute` depends on besides the image (its parameters), since the memo outlives this listing.
        """
        memo = getattr(self._lookup, "memo", None)
        if memo is not None:
            found = memo.get((ref_id, key), _ABSENT)
            if found is not _ABSENT:
                return found
        image = self.get(ref_id)
        if image is None:
            return None
        value = compute(image)
        if memo is not None:
            memo[(ref_id, key)] = value
        return value


_ABSENT = object()
