"""One scoring lane: the pipeline both engines run, shard after shard (`ShardScorer`).

DataLoader workers decode and preprocess model batches (`ImageBatches`: exactly as references are
decoded, at full size since the cues need the pixels), the main thread embeds them (GPU with AMP and
pinned memory, or CPU; ONNX Runtime on CPU by default, `embedder.runtime=auto`, the same vectors as
PyTorch to 1e-4, see `embed_runtime`), and a scorer thread hands each chunk to `ScoringBundle.score_batch`
(FAISS search, cheap cues on a thread pool, cascade, classifier) and writes finished shards: the
embeddings (`_embeddings/part-NNNNN.npy`), then the part (`part-NNNNN.parquet`), each atomically, in
`run_folder`'s layout. The cheap cues' per-reference statistics are computed once per lane. Memory is
bounded whatever the day's size: decoded images of two chunks with one lane, of one chunk per lane with
several (`lanes`).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from brandsentry.bundle import ScoringBundle, output_columns
from brandsentry.features import ScoringContext
from brandsentry.files import atomic_write
from brandsentry.image_batches import DecodedBatch, ImageBatches
from brandsentry.run_folder import EMBEDDINGS_DIR, embeddings_path, part_path
from brandsentry.scoring.plan import Shard, cut, scoring_chunks
from brandsentry.scoring.settings import ScoreSettings

log = logging.getLogger(__name__)

# Columns whose cells are lists; every other object column is written as text.
_LIST_TYPES = {
    "top_ref_ids": pa.list_(pa.int64()),
    "top_similarities": pa.list_(pa.float32()),
    "cue_failures": pa.list_(pa.string()),
}
# Manifest columns the results carry as numbers (the manifest is read as text); unparseable cells are null.
NUMERIC_LISTING_COLUMNS = ("price",)
RowError = tuple[str, str]  # (reason, detail) of a listing that cannot be scored
# A decoded model batch and its vectors, or why the model failed on it.
EmbeddedBatch = tuple[DecodedBatch, np.ndarray | str]


class ShardScorer:
    """Scores whole shards and writes them: decode workers → embed (this thread) → score + write (a thread)."""

    def __init__(
        self,
        bundle: ScoringBundle,
        context: ScoringContext,
        listings: pd.DataFrame,
        out: Path,
        decode_workers: int,
        search_batch: int,
    ):
        self.bundle = bundle
        self.context = context
        self.listings = listings
        self.out = Path(out)
        self.decode_workers = decode_workers
        self.search_batch = search_batch
        self.embedder = context.embedder
        # per manifest row: the image to decode (None when refused) and why the row is refused (or None)
        self.paths, self.refusals = self._decode_plan(listings)
        results = output_columns(bundle.feature_names) + ["scored_at"]
        self.carried = [c for c in listings.columns if c not in results]
        shadowed = [c for c in listings.columns if c in results and c not in ("listing_id", "claimed_brand")]
        if shadowed:
            log.warning(
                "manifest column(s) %s are result columns: the results keep the scorer's values", shadowed
            )

    @classmethod
    def build(
        cls,
        bundle: ScoringBundle,
        listings: pd.DataFrame,
        out: Path,
        settings: ScoreSettings,
        decode_workers: int | None = None,
    ) -> ShardScorer:
        """The bundle's context with this run's device, batch size and thread layout."""
        import cv2

        cv2.setNumThreads(1)  # cues run on a thread pool already; OpenCV's own threads would oversubscribe
        embedder_cfg = OmegaConf.to_container(bundle.config.embedder, resolve=True)
        embedder_cfg["device"] = settings.device
        for key, value in (
            ("batch_size", settings.batch_size),
            ("num_workers", settings.decode_workers),
            ("threads", settings.model_threads),
            ("runtime", settings.runtime),
        ):
            if value is not None:
                embedder_cfg[key] = value
        context = bundle.context(embedder=bundle.embedder(embedder_cfg), workers=settings.cue_workers)
        workers = context.embedder.num_workers if decode_workers is None else decode_workers
        return cls(bundle, context, listings, out, workers, settings.search_batch)

    def _decode_plan(self, rows: pd.DataFrame) -> tuple[list[str | None], list[RowError | None]]:
        """(image path or None, why the row is refused before decoding or None) of each row.

        A listing whose claimed brand has no references is an error row whatever its image: never decoded.
        """
        if rows.empty:
            return [], []
        refusals = [self.context.brand_error(brand) for brand in rows["claimed_brand"]]
        paths = [
            None if refused else path for path, refused in zip(rows["image_path"], refusals, strict=True)
        ]
        return paths, refusals

    def _batches(self, paths: list[str | None], spans: Sequence[tuple[int, int]]) -> ImageBatches:
        return ImageBatches(paths, spans, self.embedder.preprocessing, self.context.limits, keep_pixels=True)

    def score(self, shards: Sequence[Shard], on_rows: Callable[[int], None] = lambda n: None) -> None:
        """Score and write `shards`; `on_rows(n)` after each scoring chunk (progress).

        Model batches (`embedder.batch_size` rows) are embedded here while the previous chunk (up to
        `search_batch` rows, never across a shard) is searched, cued, classified and written on the scorer
        thread; FAISS answers a few hundred queries at once far faster per query than 32.
        """
        if not shards:
            return
        spans = [
            (chunk, start, stop)
            for chunk in scoring_chunks(shards, self.search_batch)
            for start, stop in cut(chunk[1], chunk[2], self.embedder.batch_size)
        ]
        loader = self._batches(self.paths, [(start, stop) for _, start, stop in spans]).loader(
            self.decode_workers, pin_memory=self.embedder.device.type == "cuda"
        )
        buffers = {shard.number: ShardBuffer(shard) for shard in shards}
        in_flight: deque[Future] = deque()
        batches: list[EmbeddedBatch] = []
        with ThreadPoolExecutor(1, "scorer", initializer=one_openmp_thread) as scorer:
            for (chunk, _, stop), decoded in zip(spans, loader, strict=True):
                batches.append((decoded, self._embed(decoded)))
                if stop == chunk[2]:
                    in_flight.append(scorer.submit(self._score_chunk, chunk, batches, buffers, on_rows))
                    batches = []
                    while len(in_flight) > 1:  # one chunk scoring while the next one embeds
                        in_flight.popleft().result()
            while in_flight:
                in_flight.popleft().result()

    def _embed(self, decoded: DecodedBatch) -> np.ndarray | str:
        """(rows, dim) unit vectors, NaN where a row failed to decode; the failure if the model failed."""
        vectors = np.full((decoded.stop - decoded.start, self.embedder.dim), np.nan, dtype=np.float32)
        if len(decoded.indices):
            try:
                vectors[decoded.indices - decoded.start] = self.embedder.embed_batch(decoded.tensor)
            except Exception as exc:  # batch edge: the batch's rows become error rows, the run goes on
                log.exception("embedding rows %d-%d failed", decoded.start, decoded.stop)
                return f"{type(exc).__name__}: {exc}"[:1000]
        return vectors

    def _score_chunk(
        self,
        chunk: tuple[int, int, int],
        batches: list[EmbeddedBatch],
        buffers: dict[int, ShardBuffer],
        on_rows: Callable[[int], None],
    ) -> None:
        shard, start, stop = chunk
        rows = self.listings.iloc[start:stop].reset_index(drop=True)
        frame, vectors = self._chunk_frame(chunk, rows, self.refusals[start:stop], batches)
        self.collect(buffers, shard, start, frame, vectors)
        on_rows(len(rows))

    def collect(
        self,
        buffers: dict[int, ShardBuffer],
        shard: int,
        start: int,
        frame: pd.DataFrame,
        vectors: np.ndarray,
    ) -> None:
        """Add a scored chunk to its shard's buffer; write the shard once all of its rows are in."""
        buffer = buffers[shard]
        buffer.add(start, frame, vectors)
        if buffer.complete:
            self._write(buffer)
            del buffers[shard]

    def run_lane(self, next_task: Callable[[], tuple | None], emit: Callable[..., None]) -> None:
        """The loop of one scoring lane (a thread or process of the local engine).

        `next_task()` gives (task id, (shard, start, stop), the chunk's manifest rows) or None to stop;
        `emit(task id, frame, vectors)` receives each chunk's results. A lane works through its chunk
        serially (decode, embed, then search, cues and classifier), so it holds one chunk of decoded images
        at a time: the other lanes keep the other cores busy. The chunk is cut into the same model batches
        as `score` cuts it, so the results are the same.
        """
        one_openmp_thread()
        for task_id, chunk, rows in iter(next_task, None):
            rows = rows.reset_index(drop=True)
            paths, refusals = self._decode_plan(rows)
            dataset = self._batches(paths, cut(0, len(rows), self.embedder.batch_size))
            batches = []
            for i in range(len(dataset)):
                decoded = dataset[i]
                batches.append((decoded, self._embed(decoded)))
            emit(task_id, *self._chunk_frame(chunk, rows, refusals, batches))
            del batches

    def _chunk_frame(
        self,
        chunk: tuple[int, int, int],
        rows: pd.DataFrame,
        refusals: list[RowError | None],
        batches: list[EmbeddedBatch],
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The result rows and embeddings of one chunk (its decoded, embedded model batches)."""
        images, errors, vectors = [], [], []
        chunk_start = batches[0][0].start  # in the rows the batches were cut from (a lane's: the chunk's)
        for decoded, embedded in batches:
            first, last = decoded.start - chunk_start, decoded.stop - chunk_start
            batch_images, batch_errors = _row_images(decoded, refusals[first:last])
            if isinstance(embedded, str):  # the model failed on this batch
                batch_images = [None] * len(batch_images)
                batch_errors = [error or ("embed_failed", embedded) for error in batch_errors]
                embedded = np.full((len(batch_images), self.embedder.dim), np.nan, dtype=np.float32)
            images += batch_images
            errors += batch_errors
            vectors.append(embedded)
        vectors = np.concatenate(vectors)
        try:
            frame = self.bundle.score_batch(rows, images, errors, vectors)
        except Exception as exc:  # chunk edge: error rows with the reason, never lost rows
            log.exception("scoring rows %d-%d failed", chunk[1], chunk[2])
            frame = self._failed_rows(rows, "scoring_failed", exc)
        return frame, vectors

    def _failed_rows(self, rows: pd.DataFrame, reason: str, exc: Exception) -> pd.DataFrame:
        n = len(rows)
        frame = pd.DataFrame(
            {
                "listing_id": rows["listing_id"].astype(str).to_numpy(),
                "claimed_brand": rows["claimed_brand"].to_numpy(),
                "score": np.nan,
                "decision": "error",
                "threshold": np.nan,
                "review_threshold": np.nan,
                "top_ref_ids": [[] for _ in range(n)],
                "top_similarities": [[] for _ in range(n)],
                "top_ref_brand": None,
                "top_ref_product": None,
                "escalated": False,
                "cue_failures": [[] for _ in range(n)],
                "error": reason,
                "error_detail": f"{type(exc).__name__}: {exc}"[:1000],
                "model_version": str(self.bundle.version),
                "evidence": "{}",
            }
        )
        cues = pd.DataFrame(np.nan, index=frame.index, columns=self.bundle.feature_names)
        return pd.concat([frame, cues], axis=1)[output_columns(self.bundle.feature_names)]

    def _write(self, buffer: ShardBuffer) -> None:
        """Embeddings first, then the part: a part on disk means its shard is complete."""
        shard = buffer.shard
        frame, vectors = buffer.assemble()
        expected = self.listings["listing_id"].iloc[shard.start : shard.stop].astype(str).to_numpy()
        if not np.array_equal(frame["listing_id"].astype(str).to_numpy(), expected):
            raise RuntimeError(f"shard {shard.number}: result rows do not line up with manifest rows")
        vectors[(frame["decision"] == "error").to_numpy()] = np.nan
        manifest_rows = self.listings.iloc[shard.start : shard.stop].reset_index(drop=True)
        for column in self.carried:
            frame[column] = manifest_rows[column].to_numpy()
            if column in NUMERIC_LISTING_COLUMNS:
                frame[column] = _as_number(frame[column], column, shard.number).to_numpy()
        frame["scored_at"] = pd.Timestamp(datetime.now(UTC))
        table = _to_arrow(frame)
        (self.out / EMBEDDINGS_DIR).mkdir(exist_ok=True)
        atomic_write(embeddings_path(self.out, shard.number), lambda handle: np.save(handle, vectors))
        atomic_write(part_path(self.out, shard.number), lambda handle: pq.write_table(table, handle))


def _row_images(
    decoded: DecodedBatch, refusals: list[RowError | None]
) -> tuple[list[np.ndarray | None], list[RowError | None]]:
    """Per row of the batch: its decoded image, or None and (reason, detail) of why it cannot be scored."""
    images: list[np.ndarray | None] = [None] * (decoded.stop - decoded.start)
    errors: list[RowError | None] = list(refusals)
    for index, image in zip(decoded.indices, decoded.images(), strict=True):
        images[index - decoded.start] = image
    for index, error in decoded.errors:
        errors[index - decoded.start] = (error.reason, error.detail)
    return images, errors


def one_openmp_thread() -> None:
    """OpenMP in this thread (the classifier's tree ensembles) runs single-threaded.

    scikit-learn's HistGradientBoosting predicts a batch of ~32 rows tree by tree, each tree an OpenMP
    region; on two busy cores the regions' thread wake-ups made `predict_proba` ~100x slower (4.5 s vs
    36 ms for 96 listings on the dev box). libgomp keeps the thread count per thread, hence here.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")


@dataclass
class ShardBuffer:
    """The scored chunks of one shard until all of its rows are in."""

    shard: Shard
    frames: dict[int, pd.DataFrame] = field(default_factory=dict)
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    rows: int = 0

    def add(self, start: int, frame: pd.DataFrame, vectors: np.ndarray) -> None:
        self.frames[start], self.vectors[start] = frame, vectors
        self.rows += len(frame)

    @property
    def complete(self) -> bool:
        return self.rows == self.shard.size

    def assemble(self) -> tuple[pd.DataFrame, np.ndarray]:
        order = sorted(self.frames)
        frame = pd.concat([self.frames[s] for s in order], ignore_index=True)
        return frame, np.concatenate([self.vectors[s] for s in order]).astype(np.float32, copy=False)


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A table whose schema depends on column dtypes only, never on values, so every shard agrees."""
    arrays, fields_ = [], []
    for name in frame.columns:
        column = frame[name]
        if name in _LIST_TYPES:
            kind = _LIST_TYPES[name]
            values = [None if v is None else [x for x in np.asarray(v).tolist()] for v in column]
        elif pd.api.types.is_bool_dtype(column):
            kind, values = pa.bool_(), column.to_numpy()
        elif pd.api.types.is_float_dtype(column):
            kind, values = pa.float64(), column.to_numpy(dtype=np.float64)
        elif pd.api.types.is_integer_dtype(column):
            kind, values = pa.int64(), column.to_numpy(dtype=np.int64)
        elif pd.api.types.is_datetime64_any_dtype(column):
            kind, values = pa.timestamp("us", tz="UTC"), column
        else:
            kind = pa.string()
            values = [None if _is_missing(v) else str(v) for v in column]
        arrays.append(pa.array(values, type=kind))
        fields_.append(pa.field(str(name), kind))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields_))


def _as_number(values: pd.Series, column: str, shard: int) -> pd.Series:
    """A text column as float64; blank cells become null silently, other unparseable ones with a warning."""
    text = pd.Series(["" if _is_missing(v) else str(v).strip() for v in values], dtype=object)
    numbers = pd.to_numeric(text.where(text != "", None), errors="coerce").astype(np.float64)
    bad = numbers.isna() & (text != "")
    if bad.any():
        log.warning(
            "shard %d: %d %s value(s) are not numbers and are null in the results, e.g. %r",
            shard,
            int(bad.sum()),
            column,
            text[bad].iloc[0],
        )
    return numbers


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
