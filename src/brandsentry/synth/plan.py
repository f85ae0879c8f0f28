"""What a synthetic world and each of its days hold, decided before any pixel: parameters, image jobs, manifest rows.

Planning runs in the parent process and draws only from seeded streams, so the plan (and with it every file
name, label and seller) is the same whatever the number of workers that render it (`synth.world`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brandsentry.errors import ConfigError
from brandsentry.settings import load_settings
from brandsentry.synth.brands import (
    COUNTERFEIT_KINDS,
    MAX_BRANDS,
    STREAM_DAY,
    STREAM_LISTING,
    STREAM_REFERENCE,
    Brand,
    Product,
    Seller,
    WorldModel,
    WorldParams,
    new_sellers,
    rng_for,
)

ERROR_KINDS = ("not_a_product", "undecodable")
LISTING_COLUMNS = (
    "listing_id", "image_path", "claimed_brand", "claimed_product", "title", "price", "seller_id", "label",
    "counterfeit_kind", "split",
)  # fmt: skip
REFERENCE_COLUMNS = ("image_path", "brand", "product", "view")
TITLE_SUFFIXES = (
    "",
    "",
    " - new",
    " (sealed)",
    " - fast shipping",
    " original",
    " NEW in box",
    " - gift idea",
)
NOT_A_PRODUCT_VARIANTS = {"landscape": ".jpg", "placeholder": ".png", "screenshot": ".png", "surface": ".jpg"}
UNDECODABLE_VARIANTS = ("truncated", "garbage", "html", "empty")


@dataclass(frozen=True)
class SplitFractions:
    """Shares of the products in each split (by product)."""

    train: float
    validation: float
    test: float

    def __post_init__(self):
        split = (self.train, self.validation, self.test)
        if any(s < 0 for s in split) or not math.isclose(sum(split), 1.0, abs_tol=1e-6) or split[0] <= 0:
            raise ConfigError(
                f"synth.split fractions must be >= 0, train > 0, and sum to 1; got {asdict(self)}"
            )


@dataclass(frozen=True)
class Resolution:
    """Longest side of every photo, px."""

    min: int
    max: int

    def __post_init__(self):
        if not 64 <= self.min <= self.max <= 4096:
            raise ConfigError(f"synth.resolution needs 64 <= min <= max <= 4096, got {asdict(self)}")


# field -> (lowest, highest) allowed value (None: no bound)
BOUNDS = {
    "seed": (0, None),
    "brands": (1, MAX_BRANDS),
    "products_per_brand": (1, 10),
    "authorized_per_brand": (1, 20),
    "seller_pool": (3, 900),
    "references_per_product": (1, 50),
    "logo_closeups": (0, 10),
    "packaging_closeups": (0, 10),
    "listings": (1, 1_000_000),
    "counterfeit_rate": (0.0, 1.0),
    "min_per_kind": (0, None),
    "not_a_product": (0, None),
    "undecodable": (0, None),
    "authorized_reuse": (0.0, 1.0),
    "detail_shots": (0.0, 1.0),
    "new_sellers_per_day": (0, 999),
    "drift": (0.0, 2.0),
}


@dataclass(frozen=True)
class SynthParams:
    """The `synth` config group (configs/synth/), validated: everything that decides the content, and
    `out`, `day` and `workers`, which never change a byte."""

    out: Path  # where the world is written
    day: int  # day 1 comes with the world; N > 1 adds listings_day{N}.csv to an existing world
    seed: int
    workers: int  # processes; 0 = one per core
    # the world
    brands: int
    products_per_brand: int
    references_per_product: int
    logo_closeups: int
    packaging_closeups: int
    authorized_per_brand: int
    seller_pool: int
    split: SplitFractions
    resolution: Resolution
    # each day
    listings: int
    counterfeit_rate: float
    counterfeit_mix: dict[str, float]  # kind -> relative weight, every kind of COUNTERFEIT_KINDS
    min_per_kind: int
    not_a_product: int
    undecodable: int
    authorized_reuse: float
    detail_shots: float
    new_sellers_per_day: int
    drift: float

    def __post_init__(self):
        unknown = sorted(set(self.counterfeit_mix) - set(COUNTERFEIT_KINDS))
        if unknown:
            raise ConfigError(
                f"synth.counterfeit_mix has unknown kinds {unknown}; known: {list(COUNTERFEIT_KINDS)}"
            )
        missing = [kind for kind in COUNTERFEIT_KINDS if kind not in self.counterfeit_mix]
        if missing:
            raise ConfigError(f"synth.counterfeit_mix has no weight for {missing} (0 leaves a kind out)")
        weights = self.counterfeit_mix.values()
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(
                f"synth.counterfeit_mix weights must be >= 0 with a positive sum, got {self.counterfeit_mix}"
            )
        for key, (low, high) in BOUNDS.items():
            value = getattr(self, key)
            if (low is not None and value < low) or (high is not None and value > high):
                raise ConfigError(f"synth.{key}={value} is outside [{low}, {high}]")
        founders = self.authorized_per_brand * self.brands + self.seller_pool
        if founders > 1000:
            raise ConfigError(
                f"synth.authorized_per_brand x brands + seller_pool = {founders}: at most 1000 founding sellers"
            )
        needed = self.not_a_product + self.undecodable + self.min_per_kind * len(COUNTERFEIT_KINDS) + 1
        if self.listings < needed:
            raise ConfigError(
                f"synth.listings={self.listings} is too few: not_a_product + undecodable + "
                f"min_per_kind x {len(COUNTERFEIT_KINDS)} kinds + 1 authentic = {needed}"
            )

    @classmethod
    def from_config(cls, synth_cfg) -> SynthParams:
        return load_settings(cls, synth_cfg, "synth")

    @property
    def world(self) -> WorldParams:
        """The parameters the world (brands, products, sellers) is built from."""
        return WorldParams(
            seed=self.seed,
            brands=self.brands,
            products_per_brand=self.products_per_brand,
            authorized_per_brand=self.authorized_per_brand,
            seller_pool=self.seller_pool,
            split=(self.split.train, self.split.validation, self.split.test),
        )

    @property
    def weights(self) -> dict[str, float]:
        """The counterfeit mix in the order of COUNTERFEIT_KINDS (the order every draw follows)."""
        return {kind: self.counterfeit_mix[kind] for kind in COUNTERFEIT_KINDS}

    @property
    def long_side(self) -> tuple[int, int]:
        """(min, max) longest side of a photo, px."""
        return self.resolution.min, self.resolution.max

    def world_dict(self) -> dict:
        """The parameters a world (brands, references, sellers) is made of; days must agree on them."""
        return {
            **asdict(self.world),
            "split": list(self.world.split),
            "references_per_product": self.references_per_product,
            "logo_closeups": self.logo_closeups,
            "packaging_closeups": self.packaging_closeups,
            "resolution": list(self.long_side),
        }

    def day_dict(self) -> dict:
        return {
            "listings": self.listings,
            "counterfeit_rate": self.counterfeit_rate,
            "counterfeit_mix": self.weights,
            "min_per_kind": self.min_per_kind,
            "not_a_product": self.not_a_product,
            "undecodable": self.undecodable,
            "authorized_reuse": self.authorized_reuse,
            "detail_shots": self.detail_shots,
            "new_sellers_per_day": self.new_sellers_per_day,
            "drift": self.drift,
        }


@dataclass(frozen=True)
class ImageJob:
    """One image file to make; everything random in it comes from `entropy`."""

    path: str  # relative to the world folder
    # reference_product | reference_logo | reference_packaging: studio photo or close-up of a genuine product;
    # listing | listing_detail: a seller's photo (or logo close-up) of a genuine or counterfeit design;
    # copy: an official photo reused; not_a_product | undecodable: the error path
    task: str
    entropy: tuple[int, ...]
    product: int = -1  # index into WorldModel.products
    kind: str = ""  # counterfeit kind for listings
    variant: str = ""  # not_a_product / undecodable variant
    source: str = ""  # the reference a copy is made from


# ---------------------------------------------------------------------------------------------- planning


def reference_jobs(world: WorldModel, params: SynthParams) -> list[ImageJob]:
    jobs = []
    seed = params.world.seed
    for index, product in enumerate(world.products):
        folder = f"references/{world.brand(product.brand).slug}/{product.id}"
        views = (
            [("reference_product", "product", k) for k in range(params.references_per_product)]
            + [("reference_logo", "logo", k) for k in range(params.logo_closeups)]
            + [("reference_packaging", "packaging", k) for k in range(params.packaging_closeups)]
        )
        for code, (task, view, k) in enumerate(views):
            jobs.append(
                ImageJob(f"{folder}/{view}_{k:02d}.jpg", task, (seed, STREAM_REFERENCE, index, code), index)
            )
    return jobs


def reference_row(world: WorldModel, job: ImageJob) -> dict:
    """A reference job's row of references.csv."""
    product = world.products[job.product]
    return {
        "image_path": job.path,
        "brand": product.brand,
        "product": product.id,
        "view": job.task.split("_", 1)[1],
    }


def day_mix(params: SynthParams, day: int) -> tuple[float, dict[str, float]]:
    """The day's counterfeit rate and mix: exactly the configured ones on day 1, drifting afterwards."""
    rate, mix = params.counterfeit_rate, params.weights
    if day == 1 or params.drift == 0:
        return rate, mix
    rng = rng_for(params.world.seed, STREAM_DAY, day, 2)
    z = rng.standard_normal(len(mix) + 1)
    mix = {kind: weight * math.exp(params.drift * z[k]) for k, (kind, weight) in enumerate(mix.items())}
    rate = min(0.9, max(0.05, rate * math.exp(0.5 * params.drift * z[-1])))
    return rate, mix


def allocate(total: int, weights: Mapping[str, float], minimum: int) -> dict[str, int]:
    """`total` items over `weights` by largest remainder, each kind getting at least `minimum`."""
    counts = {kind: minimum for kind in weights}
    spare = max(0, total - minimum * len(weights))
    norm = sum(weights.values())
    shares = {kind: spare * w / norm for kind, w in weights.items()}
    for kind, share in shares.items():
        counts[kind] += int(share)
    left = spare - sum(int(s) for s in shares.values())
    for kind in sorted(shares, key=lambda k: (-(shares[k] - int(shares[k])), k))[:left]:
        counts[kind] += 1
    return counts


@dataclass(frozen=True)
class _Planned:
    row: dict
    job: ImageJob


def plan_day(
    world: WorldModel, params: SynthParams, day: int, references: Sequence[ImageJob]
) -> list[_Planned]:
    """Every listing of `day`: its manifest row and the image job that makes its file."""
    seed = params.world.seed
    rng = rng_for(seed, STREAM_DAY, day, 0)
    rate, mix = day_mix(params, day)
    n_products = params.listings - params.not_a_product - params.undecodable
    n_counterfeit = min(n_products - 1, max(round(rate * n_products), params.min_per_kind * len(mix)))
    counts = allocate(n_counterfeit, mix, params.min_per_kind)
    n_authentic = n_products - sum(counts.values())
    n_reuse = round(params.authorized_reuse * n_authentic)
    entries = [("authentic", "", "reuse")] * n_reuse + [("authentic", "", "")] * (n_authentic - n_reuse)
    for kind, count in counts.items():
        entries += [("counterfeit", kind, "")] * count
    entries += [
        ("counterfeit", "not_a_product", str(rng.choice(list(NOT_A_PRODUCT_VARIANTS))))
        for _ in range(params.not_a_product)
    ]
    entries += [
        ("counterfeit", "undecodable", str(rng.choice(UNDECODABLE_VARIANTS)))
        for _ in range(params.undecodable)
    ]
    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]

    sellers = list(world.sellers)
    for joined in range(2, day + 1):
        sellers += new_sellers(params.world, joined, params.new_sellers_per_day)
    by_behaviour: dict[str, list[Seller]] = {}
    for seller in sellers:
        by_behaviour.setdefault(seller.behaviour, []).append(seller)
    products = world.products
    product_refs: dict[int, list[str]] = {}
    for job in references:
        if job.task == "reference_product":
            product_refs.setdefault(job.product, []).append(job.path)

    planned = []
    for i, (label, kind, variant) in enumerate(entries):
        listing_id = f"d{day}-{i:06d}"
        index = int(rng.integers(len(products)))
        product = products[index]
        brand = world.brand(product.brand)
        entropy = (seed, STREAM_LISTING, day, i)
        seller = _pick_seller(rng, brand, by_behaviour, label, kind, variant)
        price = _price(rng, product, label, kind, seller)
        suffix = ".jpg"
        if kind == "not_a_product":
            suffix = NOT_A_PRODUCT_VARIANTS[variant]
            job = ImageJob("", "not_a_product", entropy, index, kind, variant)
        elif kind == "undecodable":
            job = ImageJob("", "undecodable", entropy, index, kind, variant)
        elif kind == "stolen_photo" or variant == "reuse":
            source = str(rng.choice(product_refs[index]))
            job = ImageJob("", "copy", entropy, index, kind, source=source)
        else:
            task = "listing_detail" if rng.random() < params.detail_shots else "listing"
            job = ImageJob("", task, entropy, index, kind)
        path = f"listings/day{day}/{listing_id}{suffix}"
        job = ImageJob(path, job.task, job.entropy, job.product, job.kind, job.variant, job.source)
        title = f"{brand.name} {product.name} {product.size}{rng.choice(TITLE_SUFFIXES)}"
        row = {
            "listing_id": listing_id,
            "image_path": path,
            "claimed_brand": brand.name,
            "claimed_product": product.id,
            "title": title,
            "price": f"{price:.2f}",
            "seller_id": seller.id,
            "label": label,
            "counterfeit_kind": kind,
            "split": product.split,
        }
        planned.append(_Planned(row, job))
    return planned


def _pick_seller(
    rng: np.random.Generator,
    brand: Brand,
    by_behaviour: dict[str, list[Seller]],
    label: str,
    kind: str,
    variant: str,
) -> Seller:
    """Authorised sellers list the brand's own photos; counterfeits come mostly from counterfeiters."""
    authorised = [s for s in by_behaviour.get("authorized", []) if s.brand == brand.name]
    if variant == "reuse":
        pool = authorised
    elif label == "authentic":
        choice = rng.choice(["authorized", "reseller", "mixed"], p=[0.3, 0.5, 0.2])
        pool = authorised if choice == "authorized" else by_behaviour.get(str(choice), [])
    elif kind in ERROR_KINDS:
        pool = [s for group in ("reseller", "mixed", "counterfeiter") for s in by_behaviour.get(group, [])]
    else:
        group = "counterfeiter" if rng.random() < 0.65 else "mixed"
        pool = by_behaviour.get(group, [])
    pool = (
        pool
        or [s for s in by_behaviour.get("counterfeiter", []) + by_behaviour.get("mixed", [])]
        or authorised
    )
    return pool[int(rng.integers(len(pool)))]


def _price(rng: np.random.Generator, product: Product, label: str, kind: str, seller: Seller) -> float:
    if label == "authentic":
        factor = rng.uniform(0.95, 1.05) if seller.behaviour == "authorized" else rng.uniform(0.82, 1.18)
    elif kind == "stolen_photo":
        factor = rng.uniform(0.45, 0.95)
    elif kind in ERROR_KINDS:
        factor = rng.uniform(0.3, 1.1)
    else:
        factor = rng.uniform(0.35, 1.0)
    return round(product.price * float(factor), 2)
