"""ReferenceIndex: exactness against numpy brute force, ANN recall on clustered data, restrictions,
withdrawals, atomic versioned saves (including a save killed mid-write)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from brandsentry.config import Workspace, load_config
from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.index import (
    EmbedderMismatchError,
    IndexInputError,
    IndexParams,
    IndexStateError,
    ReferenceIndex,
    latest_manifest,
    saved_versions,
)
from brandsentry.settings import default_settings
from conftest import copy_workspace

DIM = 64
EMBEDDER = {"arch": "tf_efficientnet_lite0", "weights_sha256": "ab12", "dim": DIM}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


def clustered(n: int, seed: int, clusters: int = 40, spread: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `clusters` centres (labels returned): ANN recall means something only on structure."""
    rng = np.random.default_rng(1234)  # the same centres for references and queries
    centres = unit(rng.standard_normal((clusters, DIM)))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    return unit(centres[labels] + spread * rng.standard_normal((n, DIM))), labels


def catalog_ids(n: int, seed: int = 7) -> np.ndarray:
    """Sparse, shuffled reference ids, so that nothing relies on ids being positions."""
    return np.random.default_rng(seed).permutation(1_000_000)[:n].astype(np.int64) + 1


def brute_force(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(scores, order, axis=1)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def build(factory: str, ids: np.ndarray, vectors: np.ndarray, **params) -> ReferenceIndex:
    index = ReferenceIndex.create(factory, DIM, EMBEDDER, default_settings(IndexParams, "index", **params))
    index.add(ids, vectors)
    return index


# ---- exactness and recall ---------------------------------------------------------------------------------
def test_flat_equals_numpy_brute_force_across_query_batches():
    vectors, ids = random_unit(2000, seed=1), catalog_ids(2000)
    queries = random_unit(300, seed=2)
    index = build("Flat", ids, vectors, query_batch=64)
    result = index.search(queries, k=10)
    expected_ids, expected_scores = brute_force(queries, ids, vectors, 10)
    assert result.ids.dtype == np.int64 and result.scores.dtype == np.float32
    assert result.ids.shape == result.scores.shape == (300, 10)
    np.testing.assert_array_equal(result.ids, expected_ids)
    np.testing.assert_allclose(result.scores, expected_scores, atol=1e-5)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF32,Flat"])
def test_ann_recall_at_10_on_clustered_data(factory):
    vectors, _ = clustered(5000, seed=3)
    queries, _ = clustered(200, seed=4)
    ids = catalog_ids(5000)
    index = build(factory, ids, vectors, nprobe=8, ef_search=64)
    truth, _ = brute_force(queries, ids, vectors, 10)
    assert recall_at(index.search(queries, k=10).ids, truth) >= 0.95


def test_ivf_pq_returns_near_neighbours():
    vectors, _ = clustered(3000, seed=5)
    ids = catalog_ids(3000)
    index = build("IVF16,PQ16np", ids, vectors, nprobe=8)
    queries, _ = clustered(100, seed=6)
    truth, _ = brute_force(queries, ids, vectors, 1)
    found = index.search(queries, k=10).ids
    assert np.mean([t in row for t, row in zip(truth[:, 0], found, strict=True)]) >= 0.9


# The shape of configs/index/large.yaml (transform, IVF, 4-bit fast-scan PQ, exact re-ranking) at test scale
REFINED = "PCAR32,IVF32,PQ16x4fs,RFlat"


def exact_scores(queries: np.ndarray, found: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    rows = np.searchsorted(ids, found, sorter=np.argsort(ids))
    return np.einsum("qd,qkd->qk", queries, vectors[np.argsort(ids)[rows]])


def test_refined_ivf_pq_is_nearest_first_with_exact_scores_on_clustered_data():
    vectors, _ = clustered(6000, seed=40)
    queries, _ = clustered(300, seed=41)
    ids = catalog_ids(6000)
    # trained on a sample of 2,000 of the first add's 4,000 vectors, then a second add
    index = build(REFINED, ids[:4000], vectors[:4000], nprobe=8, refine_k_factor=8, train_size=2000)
    index.add(ids[4000:], vectors[4000:])
    assert index.search_knobs == ("nprobe", "refine_k_factor") and index.lossless_storage
    truth, _ = brute_force(queries, ids, vectors, 10)
    result = index.search(queries, k=10)
    assert np.mean(result.ids[:, 0] == truth[:, 0]) >= 0.95
    assert recall_at(result.ids, truth) >= 0.9
    # re-ranked exactly: the scores are the true cosines of the ids returned, best first
    np.testing.assert_allclose(result.scores, exact_scores(queries, result.ids, ids, vectors), atol=1e-5)
    assert (np.diff(result.scores, axis=1) <= 1e-6).all()
    index.retune(replace(index.params, refine_k_factor=1))  # no shortlist: the 4-bit codes decide alone
    assert recall_at(index.search(queries, k=10).ids, truth) < recall_at(result.ids, truth)


def test_train_size_below_what_the_structure_needs_is_a_config_error():
    index = ReferenceIndex.create(
        "IVF64,Flat", DIM, EMBEDDER, default_settings(IndexParams, "index", train_size=63)
    )
    with pytest.raises(ConfigError, match="index.train_size 63 is below the 64 vectors 'IVF64,Flat' needs"):
        index.add(catalog_ids(500), random_unit(500, seed=42))
    assert not index.is_trained and len(index) == 0


def test_refined_ivf_withdrawals_are_tombstones_filtered_in_search_then_rebuilt_without_originals(tmp_path):
    vectors, labels = clustered(3000, seed=43)
    ids = catalog_ids(3000)
    index = build(REFINED, ids, vectors, nprobe=8, rebuild_tombstone_fraction=0.05, exact_subset_max=100)
    assert not index.supports_removal and index.uses_id_selectors
    queries = vectors[:200]  # the withdrawn ones among them would find themselves first
    index.remove(ids[:50])
    assert not np.isin(index.search(queries, k=10).ids, ids[:50]).any()
    index.remove(ids[50:200])  # the tombstone filter follows every change
    assert (len(index), index.tombstone_count, index.needs_rebuild) == (2800, 200, True)
    found = index.search(queries, k=10).ids
    assert not np.isin(found, ids[:200]).any() and (found >= 0).all()
    truth, _ = brute_force(queries, ids[200:], vectors[200:], 10)
    assert recall_at(found, truth) >= 0.9
    brand = ids[200:][labels[200:] < 20]  # > exact_subset_max: filtered inside the IVF, by id-map position
    mine = queries[labels[:200] < 20]  # queries of the brand's own products: their lists are probed
    restricted = index.search(mine, k=10, allowed_ids=brand).ids
    assert np.isin(restricted, brand).all()
    brand_rows = np.isin(ids, brand)
    assert recall_at(restricted, brute_force(mine, ids[brand_rows], vectors[brand_rows], 10)[0]) >= 0.9
    index.save(tmp_path, catalog_high_water=1)
    loaded = ReferenceIndex.load(tmp_path, EMBEDDER, index.params)
    np.testing.assert_array_equal(loaded.search(queries, k=10).ids, found)
    loaded.rebuild()  # exact vectors come back from the RFlat storage
    assert (len(loaded), loaded.tombstone_count) == (2800, 0)
    np.testing.assert_array_equal(loaded.live_ids(), np.sort(ids[200:]))
    np.testing.assert_array_equal(loaded.search(vectors[200:400], k=1).ids[:, 0], ids[200:400])


# ---- brand restriction --------------------------------------------------------------------------------------
@pytest.mark.parametrize("exact_subset_max", [10_000, 0], ids=["exact-subset", "id-selector"])
def test_flat_restriction_equals_brute_force_over_allowed_subset(exact_subset_max):
    vectors, ids = random_unit(2000, seed=8), catalog_ids(2000)
    queries = random_unit(50, seed=9)
    index = build("Flat", ids, vectors, exact_subset_max=exact_subset_max)
    assert index.uses_id_selectors
    mask = np.random.default_rng(10).random(2000) < 0.3
    allowed = np.concatenate([ids[mask], [999_999_999]])  # unknown ids are ignored
    result = index.search(queries, k=10, allowed_ids=allowed)
    expected_ids, expected_scores = brute_force(queries, ids[mask], vectors[mask], 10)
    np.testing.assert_array_equal(result.ids, expected_ids)
    np.testing.assert_allclose(result.scores, expected_scores, atol=1e-5)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF32,Flat"])
def test_ann_brand_restriction_is_exact_for_small_subsets(factory):
    """A brand's references sit in a few clusters: ANN filtering alone would miss them, the exact path not."""
    vectors, labels = clustered(5000, seed=11)
    ids = catalog_ids(5000)
    index = build(factory, ids, vectors, nprobe=4, exact_subset_max=2000)
    brand = labels < 3
    queries, _ = clustered(100, seed=12)
    result = index.search(queries, k=10, allowed_ids=ids[brand])
    expected_ids, expected_scores = brute_force(queries, ids[brand], vectors[brand], 10)
    np.testing.assert_array_equal(result.ids, expected_ids)
    np.testing.assert_allclose(result.scores, expected_scores, atol=1e-5)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF32,Flat"])
def test_ann_large_restriction_through_id_selector(factory):
    vectors, _ = clustered(5000, seed=13)
    ids = catalog_ids(5000)
    index = build(factory, ids, vectors, nprobe=8, exact_subset_max=0)
    assert index.uses_id_selectors
    mask = np.random.default_rng(14).random(5000) < 0.5
    queries, _ = clustered(200, seed=15)
    found = index.search(queries, k=10, allowed_ids=ids[mask]).ids
    assert np.isin(found, ids[mask]).all()
    truth, _ = brute_force(queries, ids[mask], vectors[mask], 10)
    assert recall_at(found, truth) >= 0.95


def test_oversampling_where_faiss_has_no_selector():
    """IndexPQ takes no search parameters: the restriction is met by oversampling and filtering."""
    vectors, ids = random_unit(2000, seed=16), catalog_ids(2000)
    queries = random_unit(40, seed=17)
    oversampled = build("PQ8x4", ids, vectors, exact_subset_max=0)
    assert not oversampled.uses_id_selectors
    allowed = ids[np.random.default_rng(18).random(2000) < 0.1]
    result = oversampled.search(queries, k=10, allowed_ids=allowed)
    assert np.isin(result.ids, allowed).all()
    # the exact path scores the same PQ codes (decoded), so both must agree on the scores
    exact = ReferenceIndex(
        oversampled._index, "PQ8x4", EMBEDDER, default_settings(IndexParams, "index", exact_subset_max=10_000)
    )
    np.testing.assert_allclose(
        result.scores, exact.search(queries, k=10, allowed_ids=allowed).scores, atol=1e-4
    )


def test_restriction_with_nothing_allowed_and_short_results_are_padded():
    vectors, ids = random_unit(100, seed=19), catalog_ids(100)
    index = build("Flat", ids, vectors)
    queries = random_unit(3, seed=20)
    empty = index.search(queries, k=5, allowed_ids=[123_456_789])
    assert (empty.ids == -1).all() and np.isnan(empty.scores).all()
    short = index.search(queries, k=5, allowed_ids=ids[:2])
    assert (short.ids[:, 2:] == -1).all() and np.isnan(short.scores[:, 2:]).all()
    assert np.isin(short.ids[:, :2], ids[:2]).all()
    fresh = ReferenceIndex.create("HNSW32", DIM, EMBEDDER).search(queries, k=4)
    assert fresh.ids.shape == (3, 4) and (fresh.ids == -1).all()


# ---- input checks ----------------------------------------------------------------------------------------------
def test_bad_ids_and_vectors_are_refused_with_clear_errors():
    vectors, ids = random_unit(10, seed=21), catalog_ids(10)
    index = build("Flat", ids, vectors)
    fresh = random_unit(2, seed=22)
    with pytest.raises(IndexInputError, match="already in the index"):
        index.add(ids[:1].tolist() + [5_000_000], fresh)
    with pytest.raises(IndexInputError, match="duplicate ids"):
        index.add([5_000_000, 5_000_000], fresh)
    with pytest.raises(IndexInputError, match=r"shape \(n, 64\)"):
        index.add([5_000_000], random_unit(1, seed=23, dim=32))
    with pytest.raises(IndexInputError, match="row 1 is not L2-normalised"):
        index.add([5_000_000, 5_000_001], fresh * np.array([[1.0], [2.0]], dtype=np.float32))
    nan = fresh.copy()
    nan[0, 3] = np.nan
    with pytest.raises(IndexInputError, match="row 0 has non-finite"):
        index.add([5_000_000, 5_000_001], nan)
    with pytest.raises(IndexInputError, match=">= 0"):
        index.add([-1, 5_000_001], fresh)
    assert len(index) == 10  # nothing half-added
    assert isinstance(IndexInputError("x"), ValueError | BrandsentryError)


@pytest.mark.parametrize("factory", ["Flat,,", "HNSWx", "IVF16,PQ7", ""])
def test_bad_factory_string_is_a_value_error_naming_it(factory):
    with pytest.raises(ValueError, match=f"factory string {factory!r}"):
        ReferenceIndex.create(factory, DIM, EMBEDDER)


def test_ivf_training_needs_enough_vectors():
    index = ReferenceIndex.create("IVF64,PQ8", DIM, EMBEDDER)
    with pytest.raises(IndexStateError, match="needs at least 256 vectors"):
        index.add(catalog_ids(100), random_unit(100, seed=24))
    assert len(index) == 0


# ---- withdrawals and rebuilds ------------------------------------------------------------------------------
def test_flat_remove_is_real_and_survives_reload(tmp_path):
    vectors, ids = random_unit(500, seed=25), catalog_ids(500)
    index = build("Flat", ids, vectors)
    assert index.supports_removal
    assert index.remove(np.concatenate([ids[:50], [987_654_321]])) == 50
    assert index.remove(ids[:50]) == 0
    assert len(index) == 450 and index.tombstone_count == 0
    result = index.search(vectors[:50], k=5)
    assert not np.isin(result.ids, ids[:50]).any()
    manifest = index.save(tmp_path, catalog_high_water=int(ids.max()))
    assert (manifest.version, manifest.count, manifest.stored, manifest.tombstones) == (1, 450, 450, 0)
    assert manifest.catalog_high_water == int(ids.max()) and manifest.embedder == EMBEDDER
    loaded = ReferenceIndex.load(tmp_path, EMBEDDER)
    np.testing.assert_array_equal(loaded.live_ids(), np.sort(ids[50:]))
    np.testing.assert_array_equal(loaded.search(vectors[:50], k=5).ids, result.ids)
    loaded.add(ids[:50], vectors[:50])  # really gone, so the ids can come back
    assert len(loaded) == 500


def test_hnsw_tombstones_survive_reload_and_rebuild(tmp_path):
    vectors, _ = clustered(1000, seed=26)
    ids = catalog_ids(1000)
    index = build("HNSW32", ids, vectors, rebuild_tombstone_fraction=0.2)
    assert not index.supports_removal and index.lossless_storage
    withdrawn = ids[:150]
    assert index.remove(withdrawn) == 150
    assert (len(index), index.tombstone_count, index.needs_rebuild) == (850, 150, False)
    assert not np.isin(index.search(vectors[:150], k=10).ids, withdrawn).any()
    with pytest.raises(IndexStateError, match="rebuild before re-adding"):
        index.add(withdrawn[:1], vectors[:1])
    index.save(tmp_path, catalog_high_water=1)

    loaded = ReferenceIndex.load(
        tmp_path, EMBEDDER, default_settings(IndexParams, "index", rebuild_tombstone_fraction=0.2)
    )
    assert (len(loaded), loaded.tombstone_count) == (850, 150)
    assert latest_manifest(tmp_path).tombstones == 150
    assert not np.isin(loaded.search(vectors[:150], k=10).ids, withdrawn).any()
    # brand-restricted search skips tombstones on both the exact and the selector path
    assert not np.isin(loaded.search(vectors[:20], k=10, allowed_ids=ids[:300]).ids, withdrawn).any()
    loaded.remove(ids[150:250])
    assert loaded.needs_rebuild

    loaded.rebuild()
    assert (len(loaded), loaded.tombstone_count, loaded.needs_rebuild) == (750, 0, False)
    np.testing.assert_array_equal(loaded.live_ids(), np.sort(ids[250:]))
    np.testing.assert_array_equal(loaded.search(vectors[250:450], k=1).ids[:, 0], ids[250:450])
    loaded.add(withdrawn, vectors[:150])
    assert len(loaded) == 900
    loaded.save(tmp_path, catalog_high_water=2)
    assert ReferenceIndex.load(tmp_path, EMBEDDER).tombstone_count == 0


def test_ivf_pq_remove_reload_and_rebuild_needs_originals(tmp_path):
    vectors, labels = clustered(2000, seed=27)
    ids = catalog_ids(2000)
    index = build("IVF16,PQ16np", ids, vectors, nprobe=16)
    assert index.supports_removal and not index.lossless_storage
    index.remove(ids[:100])
    index.save(tmp_path, catalog_high_water=3)
    loaded = ReferenceIndex.load(tmp_path, EMBEDDER, default_settings(IndexParams, "index", nprobe=16))
    assert len(loaded) == 1900
    assert not np.isin(loaded.search(vectors[:100], k=10).ids, ids[:100]).any()
    brand = ids[labels == 0]  # exact path reconstructs through the saved hashtable direct map
    assert np.isin(loaded.search(vectors[:5], k=10, allowed_ids=brand).ids, brand).all()
    with pytest.raises(IndexStateError, match="pass the original ids and vectors"):
        loaded.rebuild()
    loaded.rebuild(ids[100:], vectors[100:])
    assert len(loaded) == 1900
    np.testing.assert_array_equal(loaded.live_ids(), np.sort(ids[100:]))


def test_tombstones_with_oversampling_fallback():
    vectors, ids = random_unit(1000, seed=28), catalog_ids(1000)
    index = build("PCA32,PQ8x4", ids, vectors)
    assert not index.supports_removal and not index.uses_id_selectors
    index.remove(ids[:300])
    result = index.search(vectors[:300], k=10)
    assert not np.isin(result.ids, ids[:300]).any()
    assert (result.ids >= 0).all()


@pytest.mark.parametrize(
    ("factory", "removal", "selectors"),
    [
        ("SQ8", True, True),
        ("HNSW16,SQ8", False, True),
        ("IVF16,PQ8x4fs", False, True),
        ("PCAR32,IVF16,Flat", True, True),
        ("PCA32,Flat", False, True),
        (REFINED.replace("IVF32", "IVF16"), False, True),
        ("IVF16,PQ8x4fs,Refine(SQ8)", False, True),
        ("PQ8x4,RFlat", False, False),
    ],
)
def test_every_family_withdraws_restricts_and_round_trips(tmp_path, factory, removal, selectors):
    vectors, ids = random_unit(1000, seed=34), catalog_ids(1000)
    index = build(factory, ids, vectors, exact_subset_max=50)
    assert (index.supports_removal, index.uses_id_selectors) == (removal, selectors)
    index.remove(ids[:100])
    assert (len(index), index.tombstone_count) == (900, 0 if removal else 100)
    queries = vectors[:150]
    assert not np.isin(index.search(queries, k=10).ids, ids[:100]).any()
    for allowed in (ids[::3], ids[::40]):  # the id-selector or oversampling path, then the exact path
        found = index.search(queries, k=10, allowed_ids=allowed).ids
        assert np.isin(found[found >= 0], allowed).all()
        assert not np.isin(found, ids[:100]).any()
    index.save(tmp_path, catalog_high_water=0)
    loaded = ReferenceIndex.load(tmp_path, EMBEDDER, index.params)
    np.testing.assert_array_equal(loaded.live_ids(), index.live_ids())
    np.testing.assert_array_equal(loaded.search(queries, k=10).ids, index.search(queries, k=10).ids)


# ---- persistence --------------------------------------------------------------------------------------------
def test_foreign_embedder_is_refused_naming_both(tmp_path):
    build("Flat", catalog_ids(20), random_unit(20, seed=29)).save(tmp_path, catalog_high_water=0)
    other = {**EMBEDDER, "arch": "tf_efficientnet_lite2"}
    with pytest.raises(EmbedderMismatchError, match="tf_efficientnet_lite0.*tf_efficientnet_lite2"):
        ReferenceIndex.load(tmp_path, other)
    assert len(ReferenceIndex.load(tmp_path, None)) == 20


def test_nothing_saved_yet_and_unknown_version(tmp_path):
    with pytest.raises(IndexStateError, match="no index saved yet"):
        ReferenceIndex.load(tmp_path / "index", EMBEDDER)
    with pytest.raises(IndexStateError, match="no index saved yet"):
        latest_manifest(tmp_path)
    build("Flat", catalog_ids(5), random_unit(5, seed=30)).save(tmp_path, catalog_high_water=0)
    with pytest.raises(IndexStateError, match="version 9 not found"):
        ReferenceIndex.load(tmp_path, EMBEDDER, version=9)


def test_versions_are_kept_up_to_keep_versions(tmp_path):
    vectors, ids = random_unit(50, seed=31), catalog_ids(50)
    index = ReferenceIndex.create(
        "Flat", DIM, EMBEDDER, default_settings(IndexParams, "index", keep_versions=3)
    )
    for step in range(5):
        index.add(ids[step * 10 : (step + 1) * 10], vectors[step * 10 : (step + 1) * 10])
        assert index.save(tmp_path, catalog_high_water=step).version == step + 1
    assert saved_versions(tmp_path) == [3, 4, 5]
    assert (tmp_path / "CURRENT").read_text().strip() == "v000005"
    assert latest_manifest(tmp_path).count == 50
    assert len(ReferenceIndex.load(tmp_path, EMBEDDER, version=3)) == 30
    assert sorted(p.name for p in (tmp_path / "v000005").iterdir()) == [
        "index.faiss",
        "manifest.json",
        "tombstones.npy",
    ]


def test_leftovers_of_a_crashed_save_are_ignored_then_collected(tmp_path):
    vectors, ids = random_unit(30, seed=32), catalog_ids(30)
    index = build("Flat", ids[:20], vectors[:20])
    index.save(tmp_path, catalog_high_water=0)
    half = tmp_path / ".tmp-v000002-abc"
    half.mkdir()
    (half / "index.faiss").write_bytes(b"\x00" * 10)
    (tmp_path / "CURRENT.tmp").write_text("v000002\n")
    assert len(ReferenceIndex.load(tmp_path, EMBEDDER)) == 20
    index.add(ids[20:], vectors[20:])
    assert index.save(tmp_path, catalog_high_water=1).version == 2
    assert not half.exists() and not (tmp_path / "CURRENT.tmp").exists()
    assert len(ReferenceIndex.load(tmp_path, EMBEDDER)) == 30


KILLED_SAVE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import brandsentry.index as module

    root, kill_point = Path(sys.argv[1]), sys.argv[2]
    index = module.ReferenceIndex.load(root, None)
    rng = np.random.default_rng(0)
    extra = rng.standard_normal((10, index.dim)).astype(np.float32)
    index.add(np.arange(10) + 10_000_000, extra / np.linalg.norm(extra, axis=1, keepdims=True))

    def stall(real):
        def wrapper(*args):
            if kill_point == "before-rename":  # the index file is written, the manifest not yet
                real(*args)
            print("stalled", flush=True)
            time.sleep(120)
        return wrapper

    if kill_point == "before-rename":
        module.faiss.write_index = stall(module.faiss.write_index)
    else:  # the version directory is in place, CURRENT not yet replaced
        module._point_current = stall(module._point_current)
    index.save(root, catalog_high_water=99)
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_point", ["before-rename", "before-current"])
def test_save_killed_mid_write_leaves_previous_version_loadable(tmp_path, kill_point):
    root = tmp_path / "index"
    vectors, ids = random_unit(40, seed=33), catalog_ids(40)
    build("Flat", ids, vectors).save(root, catalog_high_water=5)
    script = tmp_path / "killed_save.py"
    script.write_text(KILLED_SAVE)
    child = subprocess.Popen(
        [sys.executable, str(script), str(root), kill_point], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "stalled"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert bool(leftovers) == (kill_point == "before-rename")
    assert (root / "CURRENT").read_text().strip() == "v000001"
    loaded = ReferenceIndex.load(root, EMBEDDER)
    assert (loaded.version, len(loaded), latest_manifest(root).catalog_high_water) == (1, 40, 5)
    np.testing.assert_array_equal(loaded.search(vectors[:5], k=1).ids[:, 0], ids[:5])
    assert loaded.save(root, catalog_high_water=6).version == (2 if kill_point == "before-rename" else 3)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


# ---- config -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("group", "factory", "dim"),
    [
        ("flat", "Flat", DIM),
        ("hnsw", "HNSW32", DIM),
        ("ivfpq", "IVF256,PQ32", DIM),
        ("large", "PCAR256,IVF4096,PQ64x4fs,RFlat", 1280),
    ],
)
def test_index_configs_build(group, factory, dim):
    cfg = load_config([f"index={group}"])
    index = ReferenceIndex.from_config(cfg.index, dim=dim, embedder=EMBEDDER)
    assert index.factory == factory
    assert index.params == IndexParams.from_config(cfg.index)


def test_index_params_are_strict_and_name_the_factory_of_the_index():
    with pytest.raises(ConfigError, match=r"index.nprobes \(did you mean index.nprobe\?\)"):
        IndexParams.from_config(load_config(["+index.nprobes=4"]).index)
    with pytest.raises(ConfigError, match="index.k must be >= 1"):
        default_settings(IndexParams, "index", k=0)
    hnsw = ReferenceIndex.create("HNSW32", DIM, EMBEDDER, default_settings(IndexParams, "index"))
    assert hnsw.params.factory == hnsw.factory == "HNSW32"
    assert ReferenceIndex.create("Flat", DIM, EMBEDDER).params == default_settings(IndexParams, "index")


def test_index_build_update_and_search_with_a_re_ranked_ivf_factory(tiny_workspace, tmp_path, capsys):
    """`index=large`'s family end to end through the CLI, at the tiny world's size (a smaller IVF and PQ)."""
    from brandsentry.cli import main

    workspace = copy_workspace(tiny_workspace, tmp_path / "workspace")
    overrides = (*workspace.overrides, "index=large", f"index.factory='{REFINED.replace('IVF32', 'IVF4')}'")
    overrides += ("index.train_size=32", "index.rebuild_tombstone_fraction=0.5")
    assert main(["index", "build", *overrides]) == 0
    index_dir = Workspace.from_config(load_config(list(overrides))).index_dir
    built = latest_manifest(index_dir)
    assert built.factory == "PCAR32,IVF4,PQ16x4fs,RFlat" and built.tombstones == 0
    references = ReferenceIndex.load(index_dir, None).live_ids()
    withdrawn = int(references[0])
    assert main(["refs", "withdraw", str(withdrawn), *overrides]) == 0
    assert main(["index", "update", *overrides]) == 0
    updated = latest_manifest(index_dir)
    assert (updated.count, updated.tombstones) == (built.count - 1, 1)
    image = sorted((workspace.world / "references").rglob("*.jpg"))[0]
    capsys.readouterr()
    assert main(["index", "search", str(image), "-k", "3", *overrides]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{image}:" and len(lines) == 4 and f"ref {withdrawn} " not in "\n".join(lines)
