"""Domain exceptions. The CLI reports any `BrandsentryError` in one line; batch code turns them into error rows."""

from __future__ import annotations


class BrandsentryError(Exception):
    """A failure of the domain (bad input, bad state), as opposed to a bug."""


class ConfigError(BrandsentryError, ValueError):
    """A configuration value is missing or invalid."""


class ListingManifestError(BrandsentryError, ValueError):
    """A listings manifest that cannot be scored at all: missing file or columns, duplicate ids, no rows."""
