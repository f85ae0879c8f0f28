"""The synthetic world as plain data: fictional brands, their trade dress, products, sellers and counterfeits.

Everything here derives from one seed; `render` turns a `Design` into pixels. A counterfeit is the genuine
product's `Design` with exactly one element changed (or, for a look-alike, a different design in the same
trade dress), so only the tampered element differs between an authentic photo and a counterfeit one.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np

# Invented names, checked by hand against well-known trademarks; never add a real brand here.
BRAND_NAMES = (
    "Velquora", "Brisanth", "Tormelle", "Ondrika", "Kalvessa", "Marduvel", "Quillane", "Sorvanta",
    "Fennimark", "Lumevik", "Peltrano", "Hexmoor", "Vintaru", "Drelmont", "Nuvaska", "Gastrelle",
    "Pomerayne", "Isbranta", "Wendacor", "Rubiquel", "Zorvath", "Elsquine", "Trunelle", "Obravik",
    "Yseldor", "Morquette", "Caldrisse", "Phelvane",
)  # fmt: skip
# Names left over after the brands are drawn go to look-alike products; keep this many in reserve.
LOOKALIKE_RESERVE = 4
MAX_BRANDS = len(BRAND_NAMES) - LOOKALIKE_RESERVE

# Fonts shipped in matplotlib's wheel, grouped by visual class so that "wrong font" can pick a clearly
# different class most of the time and a subtle same-class substitute some of the time.
FONT_CLASSES = {
    "sans": ("DejaVuSans-Bold.ttf", "DejaVuSans-BoldOblique.ttf", "cmss10.ttf"),
    "serif": ("DejaVuSerif-Bold.ttf", "STIXGeneralBol.ttf", "cmb10.ttf", "cmr10.ttf"),
    "italic": ("STIXGeneralItalic.ttf", "DejaVuSerif-Italic.ttf"),
    "mono": ("DejaVuSansMono-Bold.ttf", "cmtt10.ttf"),
}
FONTS = tuple(font for group in FONT_CLASSES.values() for font in group)
TEXT_FONT = "DejaVuSans.ttf"
TEXT_BOLD_FONT = "DejaVuSans-Bold.ttf"
TEXT_ITALIC_FONT = "DejaVuSerif-Italic.ttf"

CATEGORIES = {
    "beauty": ("box", "bottle"),
    "pantry": ("bag", "box", "bottle"),
    "fashion": ("shoe_box", "label", "box"),
}
# Product names per packaging, each with the pack sizes it comes in.
PRODUCT_NAMES = {
    "box": {
        "Night Repair Serum": ("30 ml", "50 ml"), "Hydra Day Cream": ("50 ml",), "Earl Grey Reserve": ("20 bags", "100 g"),
        "Green Sencha Tea": ("20 bags", "40 bags"), "Wireless Earbuds": ("1 pair",), "Vitamin C Tablets": ("60 tablets",),
        "Mint Toothpaste": ("75 ml",), "Eye Contour Gel": ("15 ml",), "Travel Watch S2": ("42 mm",),
        "Herbal Lozenges": ("24 pieces",),
    },
    "bottle": {
        "Citrus Shampoo": ("250 ml", "500 ml"), "Argan Hair Oil": ("100 ml",), "Cold-Pressed Olive Oil": ("500 ml", "750 ml"),
        "Spring Water": ("1 L", "500 ml"), "Body Lotion": ("250 ml",), "Eau de Toilette Noir": ("100 ml", "50 ml"),
        "Lavender Hand Wash": ("300 ml",), "Sun Milk SPF 30": ("200 ml",),
    },
    "bag": {
        "Dark Roast Coffee": ("250 g", "1 kg"), "Basmati Rice": ("1 kg", "2 kg"), "Trail Mix": ("200 g",),
        "Oat Granola": ("500 g",), "Adult Dog Food": ("2 kg", "4 kg"), "Sea Salt Crisps": ("150 g",),
        "Potting Soil": ("10 L",),
    },
    "shoe_box": {
        "Runner 3 Trainers": ("EU 42", "EU 44"), "Canvas Low-Top": ("EU 40", "EU 41"), "Trail Hiker Boot": ("EU 43",),
        "Court Classic": ("UK 8", "UK 9"), "Slip-On Loafer": ("EU 42",),
    },
    "label": {
        "Merino Crew Sweater": ("Size M", "Size L"), "Denim Jacket": ("Size S", "Size M"), "Linen Shirt": ("Size L",),
        "Cashmere Scarf": ("One size",), "Cotton Hoodie": ("Size XL", "Size M"), "Wool Beanie": ("One size",),
    },
}  # fmt: skip
BASE_PRICE = {"box": (12, 90), "bottle": (6, 70), "bag": (4, 30), "shoe_box": (60, 220), "label": (35, 260)}
TAGLINES = (
    "Crafted since 1962", "Pure by nature", "Made to last", "Quietly remarkable", "Small batch quality",
    "Honest materials", "Designed in Lisbon", "For every day", "Tested by experts", "Careful by design",
)  # fmt: skip
SMALL_PRINT = (
    "Store in a cool dry place", "Made in EU", "Recyclable packaging", "Keep out of reach of children",
    "Best before end: see base", "Distributed under licence", "Batch code on side", "Do not use if seal broken",
)  # fmt: skip
LAYOUTS = ("band", "diagonal", "split", "frame", "chevron", "arc")
EMBLEM_SHAPES = ("star", "polygon", "shield", "petals", "rings", "gear")
EMBLEM_MARKS = ("dot", "slash", "crescent")
LOOKALIKE_LETTERS = {"O": "Q", "I": "l", "E": "F", "M": "N", "V": "U", "C": "G", "B": "R", "n": "h", "u": "v"}

COUNTERFEIT_KINDS = (
    "misspelled_wordmark",
    "wrong_font",
    "wrong_logo_colour",
    "altered_emblem",
    "packaging_colour_shift",
    "low_print_quality",
    "lookalike_product",
    "stolen_photo",
)
# Kinds a design change makes (stolen_photo copies a reference photo instead).
DESIGN_KINDS = COUNTERFEIT_KINDS[:-1]
PRINT_DEFECTS = ("blur", "halftone", "banding", "misregistration")
SELLER_BEHAVIOURS = ("reseller", "mixed", "counterfeiter")


@cache
def font_path(file_name: str) -> Path:
    """Where a font named in brands.json lives: matplotlib's bundled TrueType folder (no system fonts)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / file_name
    if not path.is_file():
        raise FileNotFoundError(f"font {file_name!r} is not in matplotlib's bundled fonts ({path.parent})")
    return path


def rng_for(*entropy: int) -> np.random.Generator:
    """An independent generator per (seed, stream, ...) so that no image depends on another or on scheduling."""
    return np.random.default_rng(np.random.SeedSequence([int(e) for e in entropy]))


# Streams of `rng_for`: the first key after the seed, so that no two purposes share random numbers.
STREAM_WORLD, STREAM_REFERENCE, STREAM_DAY, STREAM_LISTING = range(4)


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def hex_colour(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02x}" for c in rgb)


def rgb_of(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def hsv_of(colour: str) -> tuple[float, float, float]:
    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb_of(colour)))


def from_hsv(h: float, s: float, v: float) -> str:
    return hex_colour(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def shift_hue(colour: str, degrees: float, saturation: float = 1.0, value: float = 1.0) -> str:
    h, s, v = hsv_of(colour)
    return from_hsv(h + degrees / 360, s * saturation, v * value)


@dataclass(frozen=True)
class Palette:
    """Packaging colours: paper (background stock), primary and secondary fills, accent lines, ink (text)."""

    paper: str
    primary: str
    secondary: str
    accent: str
    ink: str


@dataclass(frozen=True)
class Emblem:
    """A procedural emblem. The mark and the monogram make it chiral, so a mirrored copy is a real difference."""

    shape: str
    points: int
    inner: float
    mark: str
    mark_angle: float
    monogram: str
    fill: str
    outline: str
    mark_colour: str
    stretch: float = 1.0
    mirrored: bool = False

    def describe(self) -> str:
        base = {
            "star": f"{self.points}-point star (inner radius {self.inner:.2f})",
            "polygon": f"{self.points}-sided polygon with an inner ring",
            "shield": f"shield with {self.points} stripes",
            "petals": f"{self.points} petals",
            "rings": f"{self.points} concentric rings",
            "gear": f"gear with {self.points} teeth",
        }[self.shape]
        text = (
            f"{base} in {self.fill}, outline {self.outline}, {self.mark} mark at {self.mark_angle:.0f} deg "
            f"in {self.mark_colour}, monogram '{self.monogram}'"
        )
        if self.stretch != 1.0:
            text += f", stretched x{self.stretch:.2f}"
        return text + (", mirrored" if self.mirrored else "")


@dataclass(frozen=True)
class Design:
    """Everything printed on one product's packaging; the renderer needs nothing else."""

    packaging: str
    wordmark: str
    font: str
    wordmark_colour: str
    emblem: Emblem
    palette: Palette
    layout: str
    logo_stacked: bool
    lines: tuple[str, ...]  # product name, size, tagline, small print
    barcode: int
    print_defect: str = ""  # one of PRINT_DEFECTS for a low-quality print, "" for the genuine print
    print_strength: float = 0.0


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    brand: str
    packaging: str
    size: str
    price: float
    split: str
    design: Design


@dataclass(frozen=True)
class Brand:
    name: str
    slug: str
    category: str
    wordmark: str
    font: str
    palette: Palette
    emblem: Emblem
    tagline: str
    products: tuple[Product, ...]
    authorized_sellers: tuple[str, ...]


@dataclass(frozen=True)
class Seller:
    """A marketplace seller. `brand` is set for a brand's authorised sellers; behaviour drives what it lists."""

    id: str
    behaviour: str  # authorized | reseller | mixed | counterfeiter
    brand: str = ""


@dataclass(frozen=True)
class WorldParams:
    """The parameters that define the world (brands, products, sellers); day parameters live elsewhere."""

    seed: int
    brands: int
    products_per_brand: int
    authorized_per_brand: int
    seller_pool: int
    split: tuple[float, float, float]  # train, validation, test


@dataclass(frozen=True)
class WorldModel:
    params: WorldParams
    brands: tuple[Brand, ...]
    sellers: tuple[Seller, ...]
    spare_names: tuple[str, ...]

    @property
    def products(self) -> tuple[Product, ...]:
        return tuple(product for brand in self.brands for product in brand.products)

    def brand(self, name: str) -> Brand:
        for brand in self.brands:
            if brand.name == name:
                return brand
        raise KeyError(f"no brand {name!r} in this world")


@cache
def build_world(params: WorldParams) -> WorldModel:
    """The whole world from its parameters alone (cheap: every worker process rebuilds it identically)."""
    rng = rng_for(params.seed, STREAM_WORLD)
    names = [str(n) for n in rng.permutation(BRAND_NAMES)]
    brand_names, spare = names[: params.brands], tuple(names[params.brands :])
    categories = [str(c) for c in rng.permutation(list(CATEGORIES))]
    hues = (np.arange(params.brands) + rng.uniform(0, 0.6, params.brands)) / params.brands
    hues = rng.permutation(hues)
    sellers, authorized = _sellers(params, brand_names, rng)
    drafts = []
    for index, name in enumerate(brand_names):
        category = categories[index % len(categories)]
        palette = _palette(float(hues[index]), rng)
        font = str(rng.choice(FONTS))
        wordmark = name.upper() if rng.random() < 0.6 else name
        emblem = random_emblem(rng, palette, monogram=name[0])
        tagline = str(rng.choice(TAGLINES))
        layout = str(rng.choice(LAYOUTS))
        stacked = bool(rng.random() < 0.6)
        wordmark_colour = palette.primary if rng.random() < 0.5 else palette.ink
        packagings = CATEGORIES[category]
        offset = int(rng.integers(len(packagings)))
        used_names: set[str] = set()
        products = []
        for p in range(params.products_per_brand):
            packaging = packagings[(p + offset) % len(packagings)]
            product_name = _unique_choice(rng, tuple(PRODUCT_NAMES[packaging]), used_names)
            size = str(rng.choice(PRODUCT_NAMES[packaging][product_name]))
            low, high = BASE_PRICE[packaging]
            price = round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 2)
            product_palette = replace(
                palette, secondary=from_hsv(rng.uniform(0, 1), rng.uniform(0.35, 0.8), rng.uniform(0.5, 0.9))
            )
            small_print = tuple(str(s) for s in rng.choice(SMALL_PRINT, size=2, replace=False))
            design = Design(
                packaging=packaging,
                wordmark=wordmark,
                font=font,
                wordmark_colour=wordmark_colour,
                emblem=emblem,
                palette=product_palette,
                layout=layout,
                logo_stacked=stacked,
                lines=(product_name, size, tagline, *small_print),
                barcode=int(rng.integers(1 << 40)),
            )
            product_id = f"{slugify(name)}-{slugify(product_name)}"
            products.append(Product(product_id, product_name, name, packaging, size, price, "", design))
        drafts.append(
            Brand(
                name=name,
                slug=slugify(name),
                category=category,
                wordmark=wordmark,
                font=font,
                palette=palette,
                emblem=emblem,
                tagline=tagline,
                products=tuple(products),
                authorized_sellers=authorized[name],
            )
        )
    splits = _assign_splits(drafts, params.split, rng)
    brands = tuple(
        replace(brand, products=tuple(replace(p, split=splits[p.id]) for p in brand.products))
        for brand in drafts
    )
    return WorldModel(params, brands, sellers, spare)


def _unique_choice(rng: np.random.Generator, options: tuple[str, ...], used: set[str]) -> str:
    """A name not used yet (there are enough for the 10 products a brand may have)."""
    choice = str(rng.choice([o for o in options if o not in used]))
    used.add(choice)
    return choice


def _palette(hue: float, rng: np.random.Generator) -> Palette:
    dark = rng.random() < 0.25
    primary = from_hsv(hue, rng.uniform(0.55, 0.9), rng.uniform(0.45, 0.8))
    accent = from_hsv(hue + rng.choice([0.5, 0.42, 0.58]), rng.uniform(0.6, 0.95), rng.uniform(0.7, 0.95))
    if dark:
        paper = from_hsv(hue + rng.uniform(-0.05, 0.05), rng.uniform(0.3, 0.6), rng.uniform(0.12, 0.25))
        ink = from_hsv(hue, rng.uniform(0.0, 0.15), rng.uniform(0.9, 1.0))
        primary = from_hsv(hue, rng.uniform(0.5, 0.8), rng.uniform(0.7, 0.9))
    else:
        paper = from_hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.02, 0.12), rng.uniform(0.92, 0.99))
        ink = from_hsv(hue, rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.25))
    return Palette(paper=paper, primary=primary, secondary=primary, accent=accent, ink=ink)


def random_emblem(rng: np.random.Generator, palette: Palette, monogram: str) -> Emblem:
    shape = str(rng.choice(EMBLEM_SHAPES))
    points = int(rng.integers(3, 5)) if shape == "rings" else int(rng.integers(5, 9))
    mark = str(rng.choice(EMBLEM_MARKS))
    # Off every symmetry axis of the base shape, so that mirroring moves the mark visibly.
    mark_angle = float(rng.uniform(25, 65) * rng.choice([1, -1]))
    return Emblem(
        shape=shape,
        points=points,
        inner=round(float(rng.uniform(0.4, 0.6)), 2),
        mark=mark,
        mark_angle=round(mark_angle, 1),
        monogram=monogram,
        fill=palette.primary,
        outline=palette.ink,
        mark_colour=palette.accent,
    )


def _sellers(
    params: WorldParams, brand_names: list[str], rng: np.random.Generator
) -> tuple[tuple[Seller, ...], dict[str, tuple[str, ...]]]:
    """The founding seller pool: each brand's authorised sellers mixed in among ordinary ones (ids say nothing)."""
    n_authorized = params.authorized_per_brand * len(brand_names)
    total = n_authorized + params.seller_pool
    ids = [f"s000{n:03d}" for n in sorted(rng.choice(1000, size=total, replace=False))]
    ids = [str(i) for i in rng.permutation(ids)]
    sellers, authorized = [], {}
    for b, name in enumerate(brand_names):
        own = ids[b * params.authorized_per_brand : (b + 1) * params.authorized_per_brand]
        authorized[name] = tuple(sorted(own))
        sellers += [Seller(i, "authorized", name) for i in own]
    for seller_id in ids[n_authorized:]:
        sellers.append(Seller(seller_id, str(rng.choice(SELLER_BEHAVIOURS, p=[0.5, 0.25, 0.25]))))
    return tuple(sorted(sellers, key=lambda s: s.id)), authorized


def new_sellers(params: WorldParams, day: int, count: int) -> tuple[Seller, ...]:
    """Sellers who join on `day` (ids `s{day:03d}nnn`, unique across days without knowing other days)."""
    rng = rng_for(params.seed, STREAM_DAY, day, 1)
    numbers = sorted(rng.choice(1000, size=min(count, 1000), replace=False))
    return tuple(
        Seller(f"s{day:03d}{n:03d}", str(rng.choice(SELLER_BEHAVIOURS, p=[0.45, 0.25, 0.3]))) for n in numbers
    )


def _assign_splits(
    brands: list[Brand], fractions: tuple[float, float, float], rng: np.random.Generator
) -> dict[str, str]:
    """Split by product; validation and test products are taken from the brands with the most left,
    so that every brand keeps training products whenever it has more than one."""
    products = [p for brand in brands for p in brand.products]
    total = len(products)
    n_test = round(fractions[2] * total)
    n_val = round(fractions[1] * total)
    if total >= 3:
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
    n_test = min(n_test, total)
    n_val = min(n_val, total - n_test)
    remaining = {brand.name: [p.id for p in brand.products] for brand in brands}
    splits = {p.id: "train" for p in products}
    for split, count in (("test", n_test), ("validation", n_val)):
        for _ in range(count):
            most = max(len(ids) for ids in remaining.values())
            candidates = sorted(name for name, ids in remaining.items() if len(ids) == most)
            brand = str(rng.choice(candidates))
            pick = remaining[brand].pop(int(rng.integers(len(remaining[brand]))))
            splits[pick] = split
    return splits


# ---------------------------------------------------------------------------------------------- counterfeits


def counterfeit_design(product: Product, kind: str, rng: np.random.Generator, world: WorldModel) -> Design:
    """The genuine design with one element tampered, the way `kind` happens in the real world."""
    design = product.design
    if kind == "misspelled_wordmark":
        return replace(design, wordmark=misspell(design.wordmark, rng))
    if kind == "wrong_font":
        return replace(design, font=other_font(design.font, rng))
    if kind == "wrong_logo_colour":
        colour = distinct_colour(design.wordmark_colour, rng)
        emblem = replace(design.emblem, fill=distinct_colour(design.emblem.fill, rng))
        return replace(design, wordmark_colour=colour, emblem=emblem)
    if kind == "altered_emblem":
        return replace(design, emblem=alter_emblem(design.emblem, rng))
    if kind == "packaging_colour_shift":
        return replace(design, palette=shift_palette(design.palette, rng))
    if kind == "low_print_quality":
        defect = str(rng.choice(PRINT_DEFECTS))
        return replace(design, print_defect=defect, print_strength=round(float(rng.uniform(0.6, 1.0)), 2))
    if kind == "lookalike_product":
        return lookalike_design(product, rng, world)
    raise ValueError(f"{kind!r} is not a design counterfeit kind (one of {DESIGN_KINDS})")


def misspell(word: str, rng: np.random.Generator) -> str:
    """A letter swapped, added, dropped or replaced by a look-alike; never the word itself."""
    letters = list(word)
    ops = ["swap", "add", "drop", "lookalike"]
    for _ in range(20):
        op = str(rng.choice(ops))
        i = int(rng.integers(1, len(letters)))  # the first letter is almost always kept by counterfeiters
        if op == "swap" and i < len(letters) - 1 and letters[i] != letters[i + 1]:
            candidate = letters[:i] + [letters[i + 1], letters[i]] + letters[i + 2 :]
        elif op == "add":
            candidate = letters[:i] + [letters[i]] + letters[i:]
        elif op == "drop" and len(letters) > 4:
            candidate = letters[:i] + letters[i + 1 :]
        elif op == "lookalike" and letters[i] in LOOKALIKE_LETTERS:
            candidate = letters[:i] + [LOOKALIKE_LETTERS[letters[i]]] + letters[i + 1 :]
        else:
            continue
        if "".join(candidate) != word:
            return "".join(candidate)
    return word[:-1] + word[-1] * 2


def other_font(font: str, rng: np.random.Generator) -> str:
    """Mostly a font of another visual class; sometimes a same-class substitute (the subtle case)."""
    own_class = next(name for name, fonts in FONT_CLASSES.items() if font in fonts)
    same = [f for f in FONT_CLASSES[own_class] if f != font]
    others = [f for name, fonts in FONT_CLASSES.items() if name != own_class for f in fonts]
    pool = same if same and rng.random() < 0.3 else others
    return str(rng.choice(pool))


def distinct_colour(colour: str, rng: np.random.Generator) -> str:
    """A clearly different colour: hue turned 70-180 degrees, or a saturated colour in place of a neutral one."""
    h, s, v = hsv_of(colour)
    if s < 0.25:
        return from_hsv(rng.uniform(0, 1), rng.uniform(0.6, 0.9), rng.uniform(0.45, 0.8))
    return from_hsv(h + rng.uniform(70, 180) / 360 * rng.choice([1, -1]), s, v)


def alter_emblem(emblem: Emblem, rng: np.random.Generator) -> Emblem:
    """Mirrored, stretched, wrong count of points, or the mark moved: the ways copied emblems go wrong."""
    change = str(rng.choice(["mirror", "stretch", "points", "mark"], p=[0.4, 0.25, 0.2, 0.15]))
    if change == "mirror":
        return replace(emblem, mirrored=True)
    if change == "stretch":
        factor = float(rng.uniform(1.3, 1.55))
        return replace(emblem, stretch=round(factor if rng.random() < 0.5 else 1 / factor, 2))
    if change == "points":
        step = int(rng.choice([-1, 1]))
        low = 3 if emblem.shape == "rings" else 5
        points = emblem.points + step if low <= emblem.points + step <= 9 else emblem.points - step
        return replace(emblem, points=points)
    return replace(emblem, mark_angle=round(-emblem.mark_angle + float(rng.uniform(-10, 10)), 1))


def shift_palette(palette: Palette, rng: np.random.Generator) -> Palette:
    """Packaging colours off by a hue turn of 15-35 degrees and a small brightness error; logo untouched."""
    degrees = float(rng.uniform(15, 35) * rng.choice([1, -1]))
    value = float(rng.uniform(0.85, 1.12))
    saturation = float(rng.uniform(0.8, 1.25))
    h, s, v = hsv_of(palette.paper)
    paper = from_hsv(
        h + degrees / 360, min(s * 1.6 + 0.03, 0.35), v * (value if v < 0.5 else min(value, 1.0))
    )
    return replace(
        palette,
        paper=paper,
        primary=shift_hue(palette.primary, degrees, saturation, value),
        secondary=shift_hue(palette.secondary, degrees, saturation, value),
    )


def lookalike_design(product: Product, rng: np.random.Generator, world: WorldModel) -> Design:
    """Another maker's product in the brand's trade dress: same packaging, similar colours, its own marks."""
    genuine = product.design
    name = str(rng.choice(world.spare_names))
    wordmark = name.upper() if genuine.wordmark.isupper() else name
    palette = Palette(
        paper=genuine.palette.paper,
        primary=shift_hue(genuine.palette.primary, float(rng.uniform(-12, 12))),
        secondary=shift_hue(genuine.palette.secondary, float(rng.uniform(-12, 12))),
        accent=genuine.palette.accent,
        ink=genuine.palette.ink,
    )
    emblem = random_emblem(rng, palette, monogram=name[0])
    layout = genuine.layout if rng.random() < 0.6 else str(rng.choice(LAYOUTS))
    return Design(
        packaging=genuine.packaging,
        wordmark=wordmark,
        font=str(rng.choice(FONTS)),
        wordmark_colour=palette.primary if rng.random() < 0.5 else palette.ink,
        emblem=emblem,
        palette=palette,
        layout=layout,
        logo_stacked=genuine.logo_stacked if rng.random() < 0.6 else not genuine.logo_stacked,
        lines=(genuine.lines[0], genuine.lines[1], str(rng.choice(TAGLINES)), *genuine.lines[3:]),
        barcode=int(rng.integers(1 << 40)),
    )
