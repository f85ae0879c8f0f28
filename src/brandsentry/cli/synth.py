"""`brandsentry synth world|sheet`: the bundled synthetic marketplace (configs/synth/, preset `synth=tiny|demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from brandsentry.cli._parser import OVERRIDES, add_command, add_group

# Shorthands of the command lines: `out=DIR day=N` mean `synth.out=DIR synth.day=N`.
_SHORTHANDS = ("out", "day")


def register(subparsers) -> None:
    commands = add_group(
        subparsers,
        "synth",
        help="generate the synthetic marketplace (brands, references, daily listings with counterfeits)",
        description="Synthetic marketplace (docs/synth.md). Presets: synth=tiny (tests, seconds) | "
        "synth=demo (default); out=DIR (default data/demo) and day=N (default 1) are shorthands of synth.out "
        "and synth.day.",
        examples=("synth world out=data/demo", "synth sheet out=data/demo day=2"),
    )
    world = add_command(
        commands,
        "world",
        help="write a world and its day 1 (day=N>1: another day's listings for the world in out=DIR)",
        description="Write brands, references, authorised sellers and listings_day1.csv under out=DIR; "
        "with day=N (N > 1) add listings_day{N}.csv to the world already there (made first if missing). "
        "Any synth.* value can be overridden.",
        examples=(
            "synth world out=data/demo",
            "synth world out=data/demo day=2",
            "synth world out=/tmp/tiny synth=tiny synth.listings=120 seed=3",
        ),
        config_values=lambda: f"[out=DIR] [day=N] {OVERRIDES}",
    )
    world.set_defaults(handler=_world)
    sheet = add_command(
        commands,
        "sheet",
        help="contact sheet PNG of one day: authentic listings beside every counterfeit kind",
        description="Write a contact sheet of day=N of the world in out=DIR.",
        examples=("synth sheet out=data/demo day=1 --columns 6 --output sheet.png",),
        config_values=lambda: f"[out=DIR] [day=N] {OVERRIDES}",
    )
    sheet.add_argument(
        "--output", type=Path, default=None, help="PNG path (default: OUT/contact_sheet_day{N}.png)"
    )
    sheet.add_argument("--columns", type=int, default=5, help="samples per row (default 5)")
    sheet.add_argument("--thumb", type=int, default=150, help="thumbnail side in px (default 150)")
    sheet.set_defaults(handler=_sheet)


def _config(overrides: list[str]):
    from brandsentry.config import load_config

    expanded = [f"synth.{token}" if token.split("=", 1)[0] in _SHORTHANDS else token for token in overrides]
    return load_config(expanded)


def _world(args: argparse.Namespace, overrides: list[str]) -> int:
    from brandsentry.synth import SynthParams, generate_day, generate_world

    params = SynthParams.from_config(_config(overrides).synth)
    out, day = params.out, params.day
    if day == 1 or not (out / "world.json").is_file():
        summary = generate_world(out, params)
        kinds = ", ".join(f"{kind or 'authentic'} {count}" for kind, count in summary.kinds.items())
        print(
            f"world in {out}: {summary.brands} brands, {summary.products} products, {summary.references} "
            f"references ({summary.references_manifest.name}), {summary.listings} listings on day 1 "
            f"({summary.listings_manifest.name}: {kinds}) in {summary.seconds:.1f} s"
        )
    if day > 1:
        manifest = generate_day(out, params, day)
        print(f"day {day}: {manifest}")
    return 0


def _sheet(args: argparse.Namespace, overrides: list[str]) -> int:
    from brandsentry.synth import SynthParams, contact_sheet

    params = SynthParams.from_config(_config(overrides).synth)
    path = contact_sheet(params.out, params.day, args.output, columns=args.columns, thumb=args.thumb)
    print(f"contact sheet: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0
