"""FAISS structures by family: what a factory string builds, and what that family can do.

`index.ReferenceIndex` decides what to do (ids, tombstones, brand-restricted search, versioned saves); the
family questions it asks (does `remove_ids` really delete? can search filter by id? is `reconstruct`
lossless? how much does training need?) are answered here, in one place, from the FAISS classes alone.
"""

from __future__ import annotations

import re

import faiss
import numpy as np

from brandsentry.errors import ConfigError

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
    for part in (ivf, inner_index(index)):
        pq = getattr(part, "pq", None)
        if pq is not None:
            needed = max(needed, int(pq.ksub))
    return needed


def inner_index(index: faiss.Index) -> faiss.Index:
    """The structure below the id map (or the index itself when it keeps native ids)."""
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.downcast_index(index.index)
    return index


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
    return isinstance(inner_index(index), faiss.IndexFlat | faiss.IndexHNSWFlat | faiss.IndexIVFFlat)


def selector_params_type(index: faiss.Index):
    """The `SearchParameters*` class that filters this family by id during search; None when none does."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexIVF):
        return faiss.SearchParametersIVF
    if isinstance(inner, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW
    if isinstance(inner, faiss.IndexFlat | faiss.IndexScalarQuantizer):
        return faiss.SearchParameters
    return None


def apply_search_knobs(index: faiss.Index, nprobe: int, ef_search: int) -> None:
    """Set the search-time knobs the family has (IVF lists probed, HNSW candidate list size)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = ef_search
