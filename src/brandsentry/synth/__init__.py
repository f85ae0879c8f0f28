"""A synthetic marketplace with labelled counterfeits, made from nothing but a seed (no network, no data sets).

Fictional brands (wordmark in a font from matplotlib's wheel, a procedural emblem, a palette) sell products
in boxes, bottles, bags, shoe boxes and hang tags. References are studio photos and logo/packaging
close-ups; each day's listings photograph authentic products and eight kinds of counterfeit in sellers'
conditions. `generate_world` writes the world and day 1, `generate_day` any later day.
"""

from brandsentry.synth.brands import COUNTERFEIT_KINDS, font_path
from brandsentry.synth.plan import ERROR_KINDS, LISTING_COLUMNS, REFERENCE_COLUMNS, SynthParams
from brandsentry.synth.sheet import contact_sheet
from brandsentry.synth.world import SynthWorldError, WorldSummary, generate_day, generate_world

__all__ = [
    "COUNTERFEIT_KINDS",
    "ERROR_KINDS",
    "LISTING_COLUMNS",
    "REFERENCE_COLUMNS",
    "SynthParams",
    "SynthWorldError",
    "WorldSummary",
    "contact_sheet",
    "font_path",
    "generate_day",
    "generate_world",
]
