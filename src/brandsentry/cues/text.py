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
from brandsentry.cues.imagestats import resize_longest
from brandsentry.cues.records import CueResult

FEATURES = ("text_chars", "text_wordmark_similarity", "text_exact", "text_near_miss")


@functools.lru_cache(maxsize=2)
def ocr_engine(threads: int):
    """One RapidOCR engine per process (its ONNX models ship in the wheel; loading costs ~0.5 s)."""
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=threads) if threads > 0 else RapidOCR()


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float
    box: tuple[tuple[float, float], ...]


def read_text(rgb: np.ndarray, params: TextParams) -> list[OcrLine]:
    """OCR lines at or above `min_score`, with boxes in the listing's pixels."""
    image, (sx, sy) = resize_longest(rgb, params.max_side)
    result, _ = ocr_engine(params.threads)(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    lines = []
    for box, text, score in result or []:
        if float(score) >= params.min_score and text.strip():
            corners = tuple((round(x / sx, 1), round(y / sy, 1)) for x, y in box)
            lines.append(OcrLine(text, float(score), corners))
    return lines


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
    rgb: np.ndarray, assets: BrandAssets | None, claimed_brand: str, params: TextParams
) -> CueResult:
    """OCR the listing once and compare what it reads with the claimed brand's wordmarks.

    Without wordmarks there is nothing to compare with, and the OCR (~0.7 s) is not run at all.
    """
    wordmarks = assets.wordmarks if assets is not None else ()
    if not wordmarks:
        return CueResult.missing(FEATURES, f"no wordmarks for claimed brand {claimed_brand!r}")
    lines = read_text(rgb, params)
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
