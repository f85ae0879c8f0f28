"""FAISS structures by family: what a factory string builds, and what that family can do.

`index.ReferenceIndex` decides what to do (ids, tombstones, brand-restricted search, versioned saves); the
family questions it asks (does `remove_ids` really delete? can search filter by id? is `reconstruct`
lossless? how much does training need?) are answered here, in one place, from the FAISS classes alone.
"""

from __future__ import annotations

import re

import faiss
import numpy as np

from brandsentry.errors import BrandsentryError, ConfigError

NORM_TOLERANCE = 1e-3  # |norm - 1| above which a vector is refused as not L2-normalised


class IndexInputError(BrandsentryError, ValueError):
    """Ids or vectors handed to the index are malformed (shape, norm, non-finite, duplicates)."""


_IDMAP_PREFIX = re.compile(r"^\s*IDMap2?\s*,\s*")


def build_faiss_index(factory: str, dim: int) -> faiss.Index:
    """The empty FAISS index for `factory`, wrapped so that it takes catalog ids."""
    if not isinstance(factory, str) or not factory.strip():
        raise ConfigError(f"invalid FAISS factory string {factory!r}: empty")
    if int(dim) < 1:
        raise ConfigError(f"index dimension must be >= 1, got {dim!r}")
    structure = _IDMAP_PREFIX.sub("", factory)
    try:
        inner = faiss.index_factory(int(dim), structure, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "rejected by faiss"
        raise ConfigError(f"invalid FAISS factory string {factory!r} for dim {dim}: {reason}") from None
    transformed = isinstance(inner, faiss.IndexPreTransform)
    if isinstance(faiss.downcast_index(inner.index) if transformed else inner, faiss.IndexIVF):
        faiss.extract_index_ivf(inner).set_direct_map_type(faiss.DirectMap.Hashtable)
        return inner
    return faiss.IndexIDMap2(inner)


def min_training_vectors(index: faiss.Index) -> int:
    """How many vectors the k-means inside `index` needs at the very least (one per centroid)."""
    needed = 1
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        needed = max(needed, int(ivf.nlist))
        ivf = faiss.downcast_index(ivf)
    for part in (ivf, core_index(index)):
        pq = getattr(part, "pq", None)
        if pq is not None:
            needed = max(needed, int(pq.ksub))
    return needed


def inner_index(index: faiss.Index) -> faiss.Index:
    """The structure below the id map (or the index itself when it keeps native ids)."""
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.downcast_index(index.index)
    return index


def refine_of(index: faiss.Index) -> faiss.IndexRefine | None:
    """The re-ranking layer (`...,RFlat`, `...,Refine(SQ8)`) when the index has one."""
    inner = inner_index(index)
    return inner if isinstance(inner, faiss.IndexRefine) else None


def core_index(index: faiss.Index) -> faiss.Index:
    """The structure that is searched first: below the id map, the re-ranking layer and any transform."""
    structure = inner_index(index)
    while isinstance(structure, faiss.IndexRefine | faiss.IndexPreTransform):
        below = structure.base_index if isinstance(structure, faiss.IndexRefine) else structure.index
        structure = faiss.downcast_index(below)
    return structure


def stored_ids(index: faiss.Index) -> np.ndarray:
    """Every id physically present, sorted; read from the index itself so it can never drift."""
    if isinstance(index, faiss.IndexIDMap2):
        ids = faiss.vector_to_array(index.id_map)
    else:
        ivf = faiss.extract_index_ivf(index)
        invlists = ivf.invlists
        parts = [np.empty(0, dtype=np.int64)]
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                pointer = invlists.get_ids(list_no)
                parts.append(faiss.rev_swig_ptr(pointer, size).copy())
                invlists.release_ids(list_no, pointer)
        ids = np.concatenate(parts)
    return np.sort(ids.astype(np.int64, copy=False))


def supports_removal(index: faiss.Index) -> bool:
    """True where FAISS really deletes (flat codes, IVF but fast-scan); elsewhere removal needs tombstones."""
    inner = inner_index(index)
    if inner is index:  # native-id IVF
        return not isinstance(faiss.downcast_index(faiss.extract_index_ivf(inner)), faiss.IndexIVFFastScan)
    return isinstance(inner, faiss.IndexFlatCodes)


def lossless_storage(index: faiss.Index) -> bool:
    """True when `reconstruct` returns the vectors that were added, so a rebuild needs no originals."""
    refine = refine_of(index)
    storage = faiss.downcast_index(refine.refine_index) if refine is not None else inner_index(index)
    return isinstance(storage, faiss.IndexFlat | faiss.IndexHNSWFlat | faiss.IndexIVFFlat)


def filters_by_id(index: faiss.Index) -> bool:
    """True where FAISS filters by id during search (an `IDSelector` in the search parameters)."""
    return _filter_params_type(inner_index(index)) is not None


def _filter_params_type(structure: faiss.Index):
    """The `SearchParameters*` class through which `structure` takes an id selector; None when none does."""
    if isinstance(structure, faiss.IndexPreTransform):  # passes its parameters down
        return _filter_params_type(faiss.downcast_index(structure.index))
    if isinstance(structure, faiss.IndexRefine):
        usable = _filter_params_type(faiss.downcast_index(structure.base_index)) is not None
        return faiss.IndexRefineSearchParameters if usable else None
    if isinstance(structure, faiss.IndexIVF):
        return faiss.SearchParametersIVF
    if isinstance(structure, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW
    if isinstance(structure, faiss.IndexFlat | faiss.IndexScalarQuantizer):
        return faiss.SearchParameters
    return None


def filtering_params(index: faiss.Index, ids: np.ndarray, keep: bool, knobs) -> faiss.SearchParameters:
    """Search parameters under which `index` returns only `ids` (`keep`) or anything but `ids`, with the
    search knobs of `knobs` (an `IndexParams`: nprobe, ef_search, refine_k_factor).

    A re-ranking layer ignores a selector of its own: its base index filters, and that index sees the id
    map's positions, not catalog ids. The selectors are referenced from the result, so they live with it.
    """
    refine = refine_of(index)
    if refine is not None:
        ids = np.flatnonzero(np.isin(faiss.vector_to_array(index.id_map), ids)).astype(np.int64)
        target = faiss.downcast_index(refine.base_index)
    else:
        target = inner_index(index)
    batch = faiss.IDSelectorBatch(ids)
    selector = batch if keep else faiss.IDSelectorNot(batch)
    params = _filter_params_type(target)(sel=selector)
    if isinstance(params, faiss.SearchParametersIVF):
        params.nprobe = knobs.nprobe
    elif isinstance(params, faiss.SearchParametersHNSW):
        params.efSearch = knobs.ef_search
    params.referenced_objects = [batch, selector]
    if refine is None:
        return params
    outer = faiss.IndexRefineSearchParameters(k_factor=float(knobs.refine_k_factor), base_index_params=params)
    outer.referenced_objects = [params]
    return outer


def search_knobs(index: faiss.Index) -> tuple[str, ...]:
    """The search-time settings (`IndexParams` fields) this family has."""
    core = core_index(index)
    knobs = ("nprobe",) if isinstance(core, faiss.IndexIVF) else ()
    knobs += ("ef_search",) if isinstance(core, faiss.IndexHNSW) else ()
    return knobs + (("refine_k_factor",) if refine_of(index) is not None else ())


def apply_search_knobs(index: faiss.Index, nprobe: int, ef_search: int, refine_k_factor: int) -> None:
    """Set the search-time knobs the family has: IVF lists probed (an HNSW coarse quantiser explores at
    least as many), HNSW candidate list size, re-ranking shortlist (k x `refine_k_factor`)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            quantizer.hnsw.efSearch = max(ef_search, nprobe)
    core = core_index(index)
    if isinstance(core, faiss.IndexHNSW):
        core.hnsw.efSearch = ef_search
    refine = refine_of(index)
    if refine is not None:
        refine.k_factor = float(refine_k_factor)


def serialized_bytes(index: faiss.Index) -> int:
    """What `faiss.write_index` writes for `index` (close to what it holds in memory), without a copy."""
    total = [0]
    writer = faiss.PyCallbackIOWriter(lambda chunk: total.__setitem__(0, total[0] + len(chunk)))
    faiss.write_index(index, writer)
    return total[0]


def check_vectors(vectors, dim: int, what: str) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dim:
        raise IndexInputError(f"{what} must have shape (n, {dim}), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise IndexInputError(f"{what} must be floating point, got {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise IndexInputError(f"{what} row {int(np.argmin(finite))} has non-finite values")
    norms = np.linalg.norm(array, axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise IndexInputError(f"{what} row {row} is not L2-normalised (norm {norms[row]:.6f})")
    return array


def check_ids(ids, count: int) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or array.shape[0] != count:
        raise IndexInputError(f"ids must be a 1-D array of {count} ids, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise IndexInputError(f"ids must be integers, got {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise IndexInputError(f"ids must be >= 0 (-1 marks a missing neighbour), got {int(array.min())}")
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise IndexInputError(f"duplicate ids in one add: {unique[counts > 1][:10].tolist()}")
    return array
