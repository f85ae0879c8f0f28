"""Text cues: OCR of the listing against the brand's wordmarks; near-miss spellings are a counterfeit tell.

A knock-off that prints "Adibas" or "Sansumg" is one or two edits away from the wordmark but never equal
to it. The tolerance grows with the wordmark's length so that short wordmarks do not match ordinary
words ("nike" and "like" are one edit apart, hence the minimum length per edit).
"""

from __future__ import annotations

import functools
import math
import unicodedata
from dataclasses import dataclass

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein

from brandsentry.cues.assets import BrandAssets
from brandsentry.cues.config import TextParams
from brandsentry.cues.imagestats import ListingPixels, enlarge_longest
from brandsentry.cues.records import CueResult

FEATURES = ("text_chars", "text_wordmark_similarity", "text_exact", "text_near_miss")


@functools.lru_cache(maxsize=2)
def ocr_engine(threads: int):
    """One RapidOCR engine per process (its ONNX models ship in the wheel; loading costs ~0.5 s), its three
    models run by OpenVINO (`_compiled_with_openvino`).

    The text cue runs its parts one by one (`text_regions`, `detect_boxes`, `recognise`); `threads` are
    each model's inference threads (0: the library's default, all cores).
    """
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=threads) if threads > 0 else RapidOCR()
    return _compiled_with_openvino(engine, threads)


def _compiled_with_openvino(engine, threads: int):
    """`engine` with its detector, line classifier and recogniser compiled by OpenVINO instead of ONNX
    Runtime: the same outputs (within 4e-6) in about half the time on the 2-core box, one thread each
    (detector at 640x480 79 -> 44 ms, at 992x736 229 -> 112 ms; recogniser on a 48x320 line 23.5 -> 11.9 ms).
    The very model files RapidOCR's config names are compiled, so a RapidOCR upgrade brings its models."""
    from pathlib import Path

    import rapidocr_onnxruntime
    from rapidocr_onnxruntime.utils import read_yaml

    from brandsentry.embed_openvino import OpenVinoSession

    package = Path(rapidocr_onnxruntime.__file__).parent
    models = read_yaml(package / "config.yaml")

    def compiled(part: str) -> OpenVinoSession:
        return OpenVinoSession(package / models[part]["model_path"], threads)

    engine.text_det.infer = compiled("Det")
    engine.text_cls.infer = compiled("Cls")
    engine.text_rec.session = compiled("Rec")
    return engine


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float
    box: tuple[tuple[float, float], ...]


def text_probability(bgr: np.ndarray, threads: int) -> np.ndarray:
    """RapidOCR's text detector (DB) on `bgr` as it is (sides rounded to multiples of 32): the per-pixel text
    probability, 1 x 1 x H x W."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    detector = ocr_engine(threads).text_det
    return detector.infer(DetPreProcess(max(bgr.shape[:2]), "max", detector.mean, detector.std)(bgr))[0]


def text_regions(pixels: ListingPixels, params: TextParams) -> list[tuple[int, int, int, int]]:
    """Rectangles (x0, y0, x1, y1 in listing pixels) where the coarse pass finds text, widened by
    `region_margin` and merged where they overlap; none on a listing without text.

    The detector on the listing at `detect_side` (~4x cheaper than at ~1000 px) marks where text is even
    where it is too small there to be cut into lines, as on small photos of small labels.
    """
    image, _ = pixels.rgb_at(params.detect_side)
    image, _ = enlarge_longest(image, params.detect_side)
    probability = text_probability(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params.threads)[0, 0]
    mask = (probability > ocr_engine(params.threads).text_det.postprocess_op.thresh).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = pixels.rgb.shape[:2]
    fx, fy = width / mask.shape[1], height / mask.shape[0]
    margin = params.region_margin * max(height, width)
    rects = [
        (
            max(0, int((x * fx) - margin)),
            max(0, int((y * fy) - margin)),
            min(width, int((x + w) * fx + margin) + 1),
            min(height, int((y + h) * fy + margin) + 1),
        )
        for x, y, w, h, _ in stats[1:count]
    ]
    return merge_overlapping(rects)


def merge_overlapping(rects: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """The rectangles with every overlapping pair replaced by their bounding rectangle, until none overlap."""
    merged: list[tuple[int, int, int, int]] = []
    for rect in sorted(rects):
        while True:
            hit = next(
                (
                    m
                    for m in merged
                    if rect[0] < m[2] and m[0] < rect[2] and rect[1] < m[3] and m[1] < rect[3]
                ),
                None,
            )
            if hit is None:
                break
            merged.remove(hit)
            rect = (min(rect[0], hit[0]), min(rect[1], hit[1]), max(rect[2], hit[2]), max(rect[3], hit[3]))
        merged.append(rect)
    return merged


def detect_boxes(pixels: ListingPixels, params: TextParams) -> list[np.ndarray]:
    """Text line boxes (4 x 2 corners in listing pixels, reading order), the `max_lines` tallest of them.

    Lines are cut where `text_regions` found text, each region on the listing scaled so that its shorter
    side is `detail_min_side`: the scale RapidOCR's own pipeline detects at (it enlarges small photos so),
    spent on the regions with text only.
    """
    regions = text_regions(pixels, params)
    if not regions:
        return []
    height, width = pixels.rgb.shape[:2]
    scale = params.detail_min_side / min(height, width)
    detector = ocr_engine(params.threads).text_det
    found = []
    for x0, y0, x1, y1 in regions:
        crop = pixels.rgb[y0:y1, x0:x1]
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crop = cv2.cvtColor(cv2.resize(crop, size, interpolation=shrink), cv2.COLOR_RGB2BGR)
        boxes, _ = detector.postprocess_op(text_probability(crop, params.threads), crop.shape[:2])
        boxes = detector.filter_tag_det_res(boxes, crop.shape[:2])
        found.extend(box * [(x1 - x0) / size[0], (y1 - y0) / size[1]] + [x0, y0] for box in boxes)
    if not found:
        return []
    boxes = np.floor(found)  # whole listing pixels, truncated, as RapidOCR cuts its own lines
    _, heights = box_size(boxes)
    tallest = boxes[np.sort(np.argsort(-heights, kind="stable")[: params.max_lines])]
    return ocr_engine(params.threads).sorted_boxes(tallest)


def box_size(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(width, height) of quadrilaterals (..., 4, 2), clockwise from top-left: their longer opposite edges."""

    def edge(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(corners[..., a, :] - corners[..., b, :], axis=-1)

    return np.maximum(edge(0, 1), edge(3, 2)), np.maximum(edge(0, 3), edge(1, 2))


def crop_line(rgb: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The quadrilateral `corners` (clockwise from top-left) of `rgb` warped upright, as BGR for RapidOCR;
    a box much taller than wide is turned a quarter (vertical text), as RapidOCR's own crops are."""
    width, height = (max(1, int(length)) for length in box_size(corners))
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    transform = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    flags = cv2.INTER_CUBIC
    crop = cv2.warpPerspective(rgb, transform, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    crop = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    return np.rot90(crop) if crop.shape[0] >= 1.5 * crop.shape[1] else crop


def recognise(pixels: ListingPixels, boxes: list[np.ndarray], params: TextParams) -> list[OcrLine]:
    """The text of each box, cut from the listing at `recognise_side`; lines at or above `min_score`."""
    if not boxes:
        return []
    source, (sx, sy) = pixels.rgb_at(params.recognise_side)
    crops = [crop_line(source, box * [sx, sy]) for box in boxes]
    engine = ocr_engine(params.threads)
    crops, _, _ = engine.text_cls(crops)  # upside-down lines turned: ~2 ms a line, reads upside-down photos
    # one line at a time: a batch is padded to its widest line, which on one thread costs more than it saves
    results = [engine.text_rec([crop])[0][0] for crop in crops]
    lines = []
    for box, (text, score) in zip(boxes, results, strict=True):
        if float(score) >= params.min_score and text.strip():
            lines.append(OcrLine(text, float(score), tuple((round(x, 1), round(y, 1)) for x, y in box)))
    return lines


def read_text(pixels: ListingPixels, params: TextParams) -> list[OcrLine]:
    """OCR lines at or above `min_score`, with boxes in the listing's pixels; no recognition without boxes."""
    return recognise(pixels, detect_boxes(pixels, params), params)


def normalise(text: str) -> str:
    """Compatibility-folded, case-folded, letters and digits only: 'Coca-Cola®' -> 'cocacola'."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def candidates(lines: list[str], max_words: int) -> set[str]:
    """Every run of up to `max_words` consecutive words of each line, normalised and joined."""
    found = set()
    for line in lines:
        words = [w for w in (normalise(part) for part in line.split()) if w]
        for start in range(len(words)):
            for stop in range(start + 1, min(len(words), start + max_words) + 1):
                found.add("".join(words[start:stop]))
    return found


def allowed_edits(wordmark: str, params: TextParams) -> int:
    return min(params.near_miss_max_distance, len(wordmark) // params.near_miss_chars_per_edit)


def compare_wordmarks(texts: set[str], wordmarks: tuple[str, ...], params: TextParams) -> dict:
    """Best normalised similarity, exact presence and near misses of `texts` against the wordmarks."""
    marks = {m for m in (normalise(w) for w in wordmarks) if m}
    best, best_pair = 0.0, None
    near_misses = []
    for text in sorted(texts):
        for mark in sorted(marks):
            similarity = Levenshtein.normalized_similarity(text, mark)
            if similarity > best:
                best, best_pair = similarity, (text, mark)
            if text not in marks and 1 <= Levenshtein.distance(text, mark) <= allowed_edits(mark, params):
                near_misses.append({"text": text, "wordmark": mark})
    return {"similarity": best, "pair": best_pair, "exact": bool(texts & marks), "near_misses": near_misses}


def text_cues(
    pixels: ListingPixels, assets: BrandAssets | None, claimed_brand: str, params: TextParams
) -> CueResult:
    """OCR the listing once and compare what it reads with the claimed brand's wordmarks.

    Without wordmarks there is nothing to compare with, and the OCR is not run at all.
    """
    wordmarks = assets.wordmarks if assets is not None else ()
    if not wordmarks:
        return CueResult.missing(FEATURES, f"no wordmarks for claimed brand {claimed_brand!r}")
    lines = read_text(pixels, params)
    evidence = {
        "ocr": [{"text": line.text, "score": round(line.score, 3), "box": line.box} for line in lines]
    }
    values = {"text_chars": float(sum(len(normalise(line.text)) for line in lines))}
    longest = max(len(w.split()) for w in wordmarks)
    found = compare_wordmarks(candidates([line.text for line in lines], longest + 1), wordmarks, params)
    evidence["wordmark_match"] = {"best": found["pair"], "near_misses": found["near_misses"]}
    values.update(text_exact=float(found["exact"]), text_near_miss=float(bool(found["near_misses"])))
    if not lines:
        values["text_wordmark_similarity"] = math.nan
        return CueResult(values, {"text_wordmark_similarity": "no text recognised"}, evidence)
    values["text_wordmark_similarity"] = found["similarity"]
    return CueResult(values, evidence=evidence)
