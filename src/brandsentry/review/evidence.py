"""Evidence pages: the run's review queue, then its flags, with what a reviewer needs to judge each in one look.

The listing beside its nearest authentic reference of the claimed brand, the verified logo drawn (box and
matched keypoints, joined to the logo template), OCR text against the brand's wordmarks, every cue value
with the reason of each missing one, the cues that pushed the score up (Shapley values), and verdict buttons
whose answers download as the CSV `brandsentry feedback import` reads. The page is one self-contained
HTML file (images inlined as data URIs), because the MLflow UI shows HTML artifacts in a sandboxed frame
where relative links do not resolve; every string that comes from a listing is escaped.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brandsentry.feedback import CUE_COLUMNS
from brandsentry.files import atomic_folder
from brandsentry.review.attribution import CascadePredictor, page_attributions
from brandsentry.review.settings import ReviewSettings
from brandsentry.review.tables import fmt_number
from brandsentry.run_folder import EVIDENCE_DIR, EVIDENCE_ITEMS

log = logging.getLogger(__name__)
EVIDENCE_ARTIFACT = "evidence"  # the page's folder among a scoring run's MLflow artifacts


# ---- evidence ------------------------------------------------------------------------------------------


def parse_evidence(value) -> dict:
    """The `evidence` column of a result row (a JSON string) as {'cues': {...}, 'reasons': {...}}."""
    if isinstance(value, dict):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = {}
    else:
        parsed = {}
    if "cues" not in parsed and "reasons" not in parsed:
        parsed = {"cues": parsed, "reasons": {}}
    return {"cues": dict(parsed.get("cues") or {}), "reasons": dict(parsed.get("reasons") or {})}


def as_list(value) -> list:
    """A list cell of the results (numpy array from Parquet, list, or missing)."""
    return [] if value is None or (isinstance(value, float) and math.isnan(value)) else list(value)


def nearest_reference(row: Mapping, references: pd.DataFrame) -> tuple[int | None, float, str]:
    """(reference id, similarity, note) of the best neighbour of the claimed brand, else the best overall."""
    ids = [int(i) for i in as_list(row.get("top_ref_ids"))]
    sims = [float(s) for s in as_list(row.get("top_similarities"))]
    claimed = str(row.get("claimed_brand", "")).strip().casefold()
    known = [(i, s) for i, s in zip(ids, sims, strict=False) if i >= 0 and i in references.index]
    for ref_id, sim in known:
        if str(references.at[ref_id, "brand"]).strip().casefold() == claimed:
            return ref_id, sim, ""
    if known:
        ref_id, sim = known[0]
        brand = references.at[ref_id, "brand"]
        return ref_id, sim, f"no reference of the claimed brand among the neighbours; nearest is {brand!r}"
    return None, math.nan, "no neighbour reference known to the catalog"


@dataclass(frozen=True)
class Panel:
    """One picture of an evidence image, with what to draw on it (in its own pixel coordinates)."""

    title: str
    image: np.ndarray | None
    missing: str = ""
    quad: tuple[tuple[float, float], ...] = ()
    quad_verified: bool = True  # a found but unverified logo is drawn dashed orange, not green
    points: tuple[tuple[float, float], ...] = ()
    boxes: tuple[tuple[tuple[float, float], ...], ...] = ()


def evidence_image(panels: Sequence[Panel], side: int, links: tuple[int, int] | None = None) -> bytes:
    """A JPEG of the panels side by side; `links` = (i, j) joins panel i's points to panel j's (matches)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import ConnectionPatch, Polygon
    from PIL import Image

    dpi = 100
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * side / dpi, side / dpi + 0.5), dpi=dpi)
    axes = np.atleast_1d(axes)
    for ax, panel in zip(axes, panels, strict=True):
        ax.set_axis_off()
        ax.set_title(panel.title, fontsize=9)
        if panel.image is None:
            ax.text(0.5, 0.5, panel.missing or "unavailable", ha="center", va="center", wrap=True, fontsize=9)
            continue
        height, width = panel.image.shape[:2]
        shown = Image.fromarray(panel.image)
        shown.thumbnail((side, side))
        ax.imshow(np.asarray(shown), extent=(0, width, height, 0), interpolation="antialiased")
        for box in panel.boxes:
            ax.add_patch(Polygon(box, closed=True, fill=False, edgecolor="deepskyblue", lw=1.2))
        if panel.quad:
            style = (
                {"edgecolor": "lime"} if panel.quad_verified else {"edgecolor": "orange", "linestyle": "--"}
            )
            ax.add_patch(Polygon(panel.quad, closed=True, fill=False, lw=2.2, **style))
        if panel.points:
            xs, ys = zip(*panel.points, strict=True)
            ax.scatter(xs, ys, s=9, c="red", edgecolors="white", linewidths=0.4, zorder=3)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
    if links is not None:
        left, right = panels[links[0]], panels[links[1]]
        pairs = list(zip(left.points, right.points, strict=False))
        for a, b in pairs[:: max(1, len(pairs) // 25)]:
            fig.add_artist(
                ConnectionPatch(
                    xyA=a,
                    xyB=b,
                    coordsA="data",
                    coordsB="data",
                    axesA=axes[links[0]],
                    axesB=axes[links[1]],
                    color="yellow",
                    lw=0.6,
                    alpha=0.8,
                )
            )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(
        buffer, format="jpeg", dpi=dpi, bbox_inches="tight", pad_inches=0.1, pil_kwargs={"quality": 85}
    )
    plt.close(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class EvidenceItem:
    """One flagged listing as the evidence page shows it."""

    rank: int
    listing_id: str
    claimed_brand: str
    claimed_product: str
    title: str
    seller_id: str
    decision: str
    score: float
    threshold: float
    review_threshold: float
    reference_id: int | None
    reference_similarity: float
    reference_note: str
    image_file: str
    image_problem: str
    ocr_lines: tuple[str, ...]
    ocr_note: str  # why there are no OCR lines (not run, skipped by the cascade, nothing recognised)
    wordmarks: tuple[str, ...]
    wordmark_best: tuple[str, str] | None
    near_misses: tuple[str, ...]
    logo: str  # one line: verified or not, inliers, why not
    cues: tuple[tuple[str, float, float, float, str], ...]  # name, value, baseline, Shapley value, NaN reason
    baseline_score: float  # the score with every cue at the run's median (NaN without attributions)
    pushed_up: tuple[tuple[str, float], ...]  # the players (cues, cue groups) that raised the score most
    others: float  # the sum of the contributions not among pushed_up (score = baseline + pushed_up + others)


@dataclass(frozen=True)
class EvidencePage:
    directory: Path
    html: Path
    items: tuple[EvidenceItem, ...]
    attribution: str  # how the contributions were computed, or why there are none
    queue: str  # "N shown of M queued for review · ...", per decision of the queue


def reference_table(catalog) -> pd.DataFrame:
    """Every reference's brand, product, view and stored path by id (what neighbour ids mean).

    Withdrawn references are kept: a run scored before a withdrawal still names them as neighbours.
    """
    refs = catalog.list_references()
    return pd.DataFrame(
        [(r.id, r.brand, r.product, r.view, r.stored_path) for r in refs],
        columns=["id", "brand", "product", "view", "stored_path"],
    ).set_index("id")


QUEUE_NAMES = {"review": "queued for review", "flag": "flagged", "pass": "passed"}


def select_for_evidence(results: pd.DataFrame, settings: ReviewSettings) -> pd.DataFrame:
    """The page's listings: `evidence.queue[d]` of each decision d in the queue's order (review first).

    Within a decision the listings closest to their flag threshold come first (the hardest calls: a review
    just under the cut-off, a flag just over it), ties broken by listing_id so the order is reproducible.
    """
    decisions = results["decision"].astype(str)
    picked = []
    for decision, count in settings.evidence.queue.items():
        rows = results[decisions == decision]
        distance = (rows["score"].astype(np.float64) - rows["threshold"].astype(np.float64)).abs()
        order = pd.DataFrame(
            {"distance": distance.fillna(np.inf), "listing_id": rows["listing_id"].astype(str)}
        ).sort_values(["distance", "listing_id"], kind="stable")
        picked.append(rows.loc[order.index[:count]])
    return pd.concat(picked) if picked else results.iloc[:0]


def queue_counts(results: pd.DataFrame, settings: ReviewSettings) -> str:
    """'N shown of M queued for review · ...': how much of each decision's queue the page holds."""
    decisions = results["decision"].astype(str)
    return " · ".join(
        f"{min(count, int((decisions == d).sum()))} shown of {int((decisions == d).sum())} {QUEUE_NAMES[d]}"
        for d, count in settings.evidence.queue.items()
    )


def file_slug(text: str) -> str:
    """A string (a listing id, a brand) as a safe file name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60].strip("._") or "listing"


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _logo_line(cues: Mapping, reasons: Mapping, values: Mapping) -> str:
    """One line on the logo check: verified with how many inliers, or why not."""
    logo = cues.get("logo")
    if logo is None:
        return "logo check not run" + (f": {reasons['logo_verified']}" if "logo_verified" in reasons else "")
    if values.get("logo_verified") == 1.0:
        return f"logo verified ({values.get('logo_inliers', math.nan):.0f} inliers)"
    if "quad" in logo:  # a homography was found, but too few or too crowded inliers
        return f"logo NOT verified: {reasons.get('region_color_distance', 'below the verification bounds')}"
    whys = sorted({str(r.get("why")) for r in logo.get("rejected", [])})
    return "logo NOT found" + (f": {'; '.join(whys[:3])}" if whys else "")


def _ocr_note(cues: Mapping, reasons: Mapping) -> str:
    if cues.get("ocr"):
        return ""
    if "ocr" in cues:
        return "no text recognised"
    return f"OCR not run: {reasons['text_chars']}" if "text_chars" in reasons else "OCR not run"


@dataclass(frozen=True)
class ImageSources:
    """How the evidence page gets pixels: listing images by path, references by id (catalog + image store)."""

    load_listing: Callable[[str], np.ndarray]
    load_reference: Callable[[int], np.ndarray]
    logo_template_side: int  # cues.logo.template_max_side: the scale logo template points are given in


def _panels(row: Mapping, cues: Mapping, references: pd.DataFrame, ref_id: int | None, sources: ImageSources):
    """(panels, links, problem): logo template | listing | nearest reference, whatever could be loaded."""
    from brandsentry.cues.imagestats import resize_longest

    problem = ""
    try:
        listing = sources.load_listing(str(row["image_path"]))
    except Exception as exc:  # batch edge: one unreadable image leaves a note, not a broken page
        listing, problem = None, f"listing image unavailable: {type(exc).__name__}: {exc}"
    logo = cues.get("logo") or {}
    quad = tuple(tuple(p) for p in logo.get("quad", ()))
    listing_panel = Panel(
        title=f"listing {row['listing_id']} (claims {row['claimed_brand']})",
        image=listing,
        missing=problem,
        quad=quad,
        quad_verified=_number(row.get("logo_verified")) == 1.0,
        points=tuple(tuple(p) for p in logo.get("inlier_points", ())),
        boxes=tuple(tuple(tuple(p) for p in line.get("box", ())) for line in cues.get("ocr") or []),
    )
    reference_panel = Panel("no reference", None, "no neighbour reference known to the catalog")
    if ref_id is not None:
        brand, product = references.at[ref_id, "brand"], references.at[ref_id, "product"]
        try:
            reference_panel = Panel(
                f"nearest reference #{ref_id} ({brand} / {product})", sources.load_reference(ref_id)
            )
        except Exception as exc:  # batch edge, as above
            reference_panel = Panel(f"reference #{ref_id}", None, f"unavailable: {type(exc).__name__}: {exc}")
    panels, links = [listing_panel, reference_panel], None
    template_id = logo.get("reference_id")
    if quad and template_id is not None and int(template_id) in references.index:
        try:
            template = sources.load_reference(int(template_id))
            _, (sx, sy) = resize_longest(template, sources.logo_template_side)
            template_points = tuple((x / sx, y / sy) for x, y in logo.get("template_points", ()))
            panels.insert(0, Panel(f"logo template #{template_id}", template, points=template_points))
            links = (0, 1)
        except Exception as exc:  # batch edge, as above
            log.warning("logo template %s unavailable for evidence: %s", template_id, exc)
    return panels, links, problem


def _evidence_item(
    rank: int,
    row: Mapping,
    image_file: str,
    image_problem: str,
    references: pd.DataFrame,
    wordmarks: tuple[str, ...],
    medians: pd.Series,
    contributions: Mapping[str, float],
    baseline_score: float,
    top: int,
) -> EvidenceItem:
    evidence = parse_evidence(row.get("evidence"))
    cues, reasons = evidence["cues"], evidence["reasons"]
    ref_id, ref_sim, ref_note = nearest_reference(row, references)
    values = {name: float(row[name]) for name in medians.index}
    cue_rows = tuple(
        (name, value, float(medians[name]), float(contributions.get(name, math.nan)),
         str(reasons.get(name, "")) if math.isnan(value) else "")
        for name, value in values.items()
    )  # fmt: skip
    pushed = sorted(
        ((n, float(d)) for n, d in contributions.items() if d > 1e-6), key=lambda p: (-p[1], p[0])
    )
    rest = [value for name, value in contributions.items() if name not in {n for n, _ in pushed[:top]}]
    match = cues.get("wordmark_match") or {}
    best = match.get("best")
    return EvidenceItem(
        rank=rank,
        listing_id=str(row["listing_id"]),
        claimed_brand=_text(row.get("claimed_brand")),
        claimed_product=_text(row.get("claimed_product")),
        title=_text(row.get("title")),
        seller_id=_text(row.get("seller_id")),
        decision=str(row["decision"]),
        score=float(row["score"]),
        threshold=_number(row.get("threshold")),
        review_threshold=_number(row.get("review_threshold")),
        reference_id=ref_id,
        reference_similarity=ref_sim,
        reference_note=ref_note,
        image_file=image_file,
        image_problem=image_problem,
        ocr_lines=tuple(str(line.get("text", "")) for line in cues.get("ocr") or []),
        ocr_note=_ocr_note(cues, reasons),
        wordmarks=wordmarks,
        wordmark_best=tuple(best) if best else None,
        near_misses=tuple(f"{m['text']} ≈ {m['wordmark']}" for m in match.get("near_misses", [])),
        logo=_logo_line(cues, reasons, values),
        cues=cue_rows,
        baseline_score=baseline_score,
        pushed_up=tuple(pushed[:top]),
        others=float(sum(rest)) if contributions else math.nan,
    )


def build_evidence_page(
    results: pd.DataFrame,
    out_dir: Path,
    settings: ReviewSettings,
    *,
    references: pd.DataFrame,
    wordmarks: Mapping[str, Sequence[str]],
    sources: ImageSources,
    predictor: CascadePredictor | None = None,
    title: str = "",
) -> EvidencePage:
    """Write `out_dir/_evidence/` (index.html, one JPEG per listing, items.json) and return what it holds.

    `references` is `reference_table(catalog)`; `predictor` (`CascadePredictor.from_bundle`) enables the
    cue attributions (Shapley values against the run's median cue values). Written to a temporary folder
    first and swapped in, so a half-written page never replaces a complete one.
    """
    chosen = select_for_evidence(results, settings)
    ok = results[results["decision"].astype(str) != "error"]
    contributions, base_scores = None, None
    attribution = "no scoring model given: cue values without attributions"
    if chosen.empty:
        attribution = f"no listing with decision {' or '.join(settings.evidence.decisions)}"
    elif predictor is not None:
        contributions, base_scores, attribution = page_attributions(
            predictor, results, chosen, ok, settings.evidence.attribution_players
        )
    cue_names = [c for c in CUE_COLUMNS if c in results.columns]
    medians = ok[cue_names].astype(np.float64).median(skipna=True)
    wordmarks_of = {str(b).strip().casefold(): tuple(w) for b, w in wordmarks.items()}
    out_dir = Path(out_dir)
    with atomic_folder(out_dir / EVIDENCE_DIR) as staging:
        items = []
        for rank, (index, row) in enumerate(chosen.iterrows(), start=1):
            row = row.to_dict()
            cues = parse_evidence(row.get("evidence"))["cues"]
            ref_id = nearest_reference(row, references)[0]
            panels, links, problem = _panels(row, cues, references, ref_id, sources)
            image_file = f"{rank:03d}-{file_slug(str(row['listing_id']))}.jpg"
            (staging / image_file).write_bytes(evidence_image(panels, settings.evidence.panel_side, links))
            brand_wordmarks = wordmarks_of.get(_text(row.get("claimed_brand")).strip().casefold(), ())
            found = contributions is not None
            row_contributions = contributions.loc[index].dropna().to_dict() if found else {}
            base_score = float(base_scores.loc[index]) if found else math.nan
            items.append(
                _evidence_item(
                    rank,
                    row,
                    image_file,
                    problem,
                    references,
                    brand_wordmarks,
                    medians,
                    row_contributions,
                    base_score,
                    settings.evidence.attribution_top,
                )  # fmt: skip
            )
        queue = queue_counts(results, settings)
        (staging / "index.html").write_text(
            render_evidence_html(items, staging, title, attribution, queue, out_dir), encoding="utf-8"
        )
        (staging / EVIDENCE_ITEMS).write_text(
            json.dumps([_item_json(item) for item in items], indent=1), encoding="utf-8"
        )
    final = out_dir / EVIDENCE_DIR
    return EvidencePage(final, final / "index.html", tuple(items), attribution, queue)


def _item_json(item: EvidenceItem) -> dict:
    """An item as strict JSON (NaN as null), for notebooks."""

    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    data = {key: clean(value) for key, value in vars(item).items()}
    data["cues"] = [
        {"name": n, "value": clean(v), "median": clean(m), "delta": clean(d), "reason": r}
        for n, v, m, d, r in item.cues
    ]
    data["pushed_up"] = [{"name": n, "delta": d} for n, d in item.pushed_up]
    return data


_PAGE_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; } .note { color: #555; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1em; margin: 1.2em 0; }
section h2 { font-size: 1.1em; margin: 0 0 .4em; }
.score { font-weight: 600; } .flag { color: #b00020; } .review { color: #b36b00; }
img { max-width: 100%; border: 1px solid #eee; }
.cols { display: flex; gap: 1.5em; flex-wrap: wrap; } .cols > div { flex: 1 1 340px; }
table { border-collapse: collapse; font-size: 12.5px; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } tr.up td { background: #ffecec; }
code { background: #f1f1f1; padding: 0 3px; }
#answers { position: sticky; top: 0; z-index: 1; }
#answers, .verdict { background: #fff; padding: .5em; border: 1px solid #ddd; border-radius: 6px; }
.verdict { margin: .6em 0; } .verdict input.note { width: 24em; }
button[aria-pressed="true"] { background: #224; color: #fff; }
</style></head><body data-run="{{ run }}" data-key="{{ key }}">
<h1>{{ title }}</h1>
<p class="note" id="queue">{{ queue }}. Per decision, the listings closest to their flag threshold first (ties by
listing id).</p>
<p class="note">Attributions: {{ attribution }}.</p>
<div id="answers">
<label>reviewer <input id="reviewer" autocomplete="name" placeholder="your name"></label>
<button type="button" id="download">Download CSV</button>
<span id="answered"></span> <span class="note" id="storage"></span>
<p class="note">The CSV is what <code>brandsentry feedback import FILE</code> reads: counterfeit →
<code>confirmed_counterfeit</code>; authentic → <code>false_positive</code> for a flag, <code>authentic</code> for a
review; unsure answers stay on this page only. Answers are kept in this browser.</p>
</div>
{% for item in items %}
<section id="{{ item.anchor }}" class="item" data-listing="{{ item.listing_id }}" data-decision="{{ item.decision }}">
<h2>#{{ item.rank }} · {{ item.listing_id }} · <span class="{{ item.decision }}">{{ item.decision }}</span>
 · score <span class="score">{{ item.score }}</span> (flag threshold {{ item.threshold }}, review from {{ item.review_threshold }})</h2>
<p>claims <b>{{ item.claimed_brand }}</b>{% if item.claimed_product %} / {{ item.claimed_product }}{% endif %}
{% if item.seller_id %} · seller {{ item.seller_id }}{% endif %}{% if item.title %} · “{{ item.title }}”{% endif %}</p>
<div class="verdict">verdict:
<button type="button" data-verdict="counterfeit" aria-pressed="false">counterfeit</button>
<button type="button" data-verdict="authentic" aria-pressed="false">authentic</button>
<button type="button" data-verdict="unsure" aria-pressed="false">unsure</button>
<input class="note" type="text" placeholder="note (optional)" aria-label="note on {{ item.listing_id }}">
</div>
{% if item.image_problem %}<p class="note">{{ item.image_problem }}</p>{% endif %}
<img src="{{ item.image_uri }}" alt="evidence for {{ item.listing_id }}">
<p class="note">nearest reference: {{ item.reference }}{% if item.reference_note %} ({{ item.reference_note }}){% endif %}
 · logo box green when verified, dashed orange when not; red points: matched keypoints; blue boxes: OCR text.</p>
<div class="cols"><div>
<h3>Why it scored high</h3>
{% if item.attributed %}<p>baseline score {{ item.baseline_score }} (every cue at the run's median), then</p>
<ul>{% for name, delta in item.pushed_up %}<li><code>{{ name }}</code> +{{ delta }}</li>{% endfor %}
<li>everything else {{ item.others }}</li></ul>
{% else %}<p class="note">no cue attribution available</p>{% endif %}
<h3>Logo</h3><p>{{ item.logo }}</p>
<h3>Text (OCR) vs. wordmark</h3>
<p>expected: {% for w in item.wordmarks %}<code>{{ w }}</code> {% else %}<i>no wordmark on file</i>{% endfor %}</p>
<p>read: {% for line in item.ocr_lines %}<code>{{ line }}</code> {% else %}<i>{{ item.ocr_note }}</i>{% endfor %}</p>
{% if item.wordmark_best %}<p>closest: <code>{{ item.wordmark_best[0] }}</code> vs <code>{{ item.wordmark_best[1] }}</code></p>{% endif %}
{% if item.near_misses %}<p><b>near-miss spellings:</b> {% for m in item.near_misses %}<code>{{ m }}</code> {% endfor %}</p>{% endif %}
</div><div>
<h3>Cues</h3>
<table><tr><th>cue</th><th>value</th><th>run median</th><th>Shapley</th><th></th></tr>
{% for cue in item.cues %}<tr{% if cue.up %} class="up"{% endif %}><td><code>{{ cue.name }}</code></td>
<td class="num">{{ cue.value }}</td><td class="num">{{ cue.median }}</td><td class="num">{{ cue.delta }}</td>
<td class="note">{{ cue.reason }}</td></tr>
{% endfor %}</table>
</div></div>
</section>
{% endfor %}
<script>
{{ script }}
</script>
</body></html>
"""
VERDICT_SCRIPT = Path(__file__).with_name("verdicts.js")


def render_evidence_html(
    items: Sequence[EvidenceItem], image_dir: Path, title: str, attribution: str, queue: str, run_dir: Path
) -> str:
    """The evidence page, every listing-supplied string escaped and every image inlined as a data URI.

    The run folder's path keys the page's answers in the browser's storage (two runs named day2 in
    different folders keep theirs apart); its name names the downloaded CSV.
    """
    from jinja2 import Environment
    from markupsafe import Markup

    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(_PAGE_TEMPLATE)
    views = []
    for item in items:
        encoded = base64.b64encode((Path(image_dir) / item.image_file).read_bytes()).decode("ascii")
        pushed = {name for name, _ in item.pushed_up}
        views.append(
            {
                **vars(item),
                "anchor": f"item-{item.rank}",
                "score": fmt_number(item.score),
                "threshold": fmt_number(item.threshold),
                "review_threshold": fmt_number(item.review_threshold),
                "baseline_score": fmt_number(item.baseline_score),
                "attributed": math.isfinite(item.baseline_score),
                "others": f"{item.others:+.3f}" if math.isfinite(item.others) else "—",
                "image_uri": f"data:image/jpeg;base64,{encoded}",
                "reference": (
                    f"#{item.reference_id} (similarity {fmt_number(item.reference_similarity)})"
                    if item.reference_id is not None
                    else "none"
                ),
                "pushed_up": [(name, fmt_number(delta)) for name, delta in item.pushed_up],
                "cues": [
                    {
                        "name": name,
                        "value": fmt_number(value),
                        "median": fmt_number(median),
                        "delta": fmt_number(delta),
                        "reason": reason,
                        "up": name in pushed,
                    }
                    for name, value, median, delta, reason in item.cues
                ],
            }
        )
    return template.render(
        title=title or "Evidence",
        items=views,
        attribution=attribution.rstrip("."),
        queue=queue,
        run=Path(run_dir).name,
        key=str(Path(run_dir).resolve()),
        script=Markup(VERDICT_SCRIPT.read_text(encoding="utf-8")),
    )
