"""The SQLite catalog: schema migrations, transactions, the status life cycle and the index hand-off."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import threading

import numpy as np
import pytest

from brandsentry import catalog as catalog_module
from brandsentry.catalog import MIGRATIONS, Catalog, CatalogError, Reference, hamming
from brandsentry.config import Workspace
from brandsentry.errors import BrandsentryError


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def add(catalog: Catalog, key: str, brand: str = "Acme", phash: str = "0" * 16, **extra) -> Reference:
    fields = dict(
        brand=brand,
        product="Widget",
        view="product",
        sha256=sha(key),
        phash=phash,
        stored_path=f"{sha(key)[:2]}/{sha(key)[2:4]}/{sha(key)}.jpg",
        width=640,
        height=480,
        submitted_by="tester",
        source_name=f"{key}.jpg",
    )
    fields.update(extra)
    return catalog.add_reference(**fields)


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as opened:
        yield opened


def test_fresh_catalog_is_wal_with_foreign_keys_and_current_schema(catalog):
    connection = sqlite3.connect(catalog.path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"brands", "products", "references"} <= tables
    connection.close()
    assert catalog.connection().execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert catalog.schema_version == len(MIGRATIONS)


def test_open_by_workspace_uses_its_catalog_path(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    with Catalog.open(workspace) as opened:
        assert opened.path == workspace.catalog_path
        add(opened, "a")
    with Catalog.open(tmp_path / "ws") as reopened:
        assert [ref.source_name for ref in reopened.list_references()] == ["a.jpg"]


def test_appending_a_migration_upgrades_an_existing_catalog(tmp_path, monkeypatch):
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as old:
        kept = add(old, "kept")
    extended = [*MIGRATIONS, "CREATE TABLE sellers (id TEXT PRIMARY KEY, name TEXT); -- a later issue"]
    monkeypatch.setattr(catalog_module, "MIGRATIONS", extended)
    with Catalog(path) as upgraded:
        assert upgraded.schema_version == len(extended)
        assert upgraded.get(kept.id) == kept
        upgraded.connection().execute("INSERT INTO sellers VALUES ('s1', 'Shop; with semicolon')")
    monkeypatch.setattr(catalog_module, "MIGRATIONS", MIGRATIONS)
    with pytest.raises(CatalogError, match="newer than this code knows"):
        Catalog(path)


def test_other_stages_create_their_own_tables_in_the_catalog_file(tmp_path):
    script = """
    CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS notes_text ON notes(text);
    """
    held = "SELECT name FROM sqlite_master WHERE name = 'notes'"
    with Catalog.open(tmp_path / "ws") as plain:
        assert not plain.connection().execute(held).fetchall()
    with Catalog.open(tmp_path / "ws", schemas=[script]) as owned:
        owned.connection().execute("INSERT INTO notes (text) VALUES ('kept')")
        owned.ensure_schema(script)  # checked once per catalog object
    with Catalog.open(tmp_path / "ws", schemas=[script]) as again:  # idempotent: the rows stay
        assert again.connection().execute("SELECT text FROM notes").fetchall() == [("kept",)]
        assert again.schema_version == len(MIGRATIONS)
        with pytest.raises(ValueError, match="IF NOT EXISTS"):
            again.ensure_schema("CREATE TABLE other (id INTEGER)")


def test_add_creates_brand_and_product_rows_and_round_trips(catalog):
    first = add(catalog, "a", brand="Acme")
    second = add(catalog, "b", brand="Zeta", view="logo", status="approved")
    assert catalog.brands() == ["Acme", "Zeta"]
    assert catalog.get(first.id) == first
    assert first.status == "pending" and second.status == "approved"
    assert first.id < second.id
    assert first.submitted_at == first.status_changed_at
    assert first.in_index is False and first.reason is None
    products = catalog.connection().execute("SELECT brand, name FROM products ORDER BY brand").fetchall()
    assert products == [("Acme", "Widget"), ("Zeta", "Widget")]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"brand": " "}, "brand must not be empty"),
        ({"product": ""}, "product must not be empty"),
        ({"view": "side"}, "unknown view 'side'"),
        ({"status": "indexed"}, "starts pending or approved, not 'indexed'"),
        ({"sha256": "XYZ"}, "sha256 must be 64 lowercase hex digits, got 'XYZ'"),
        ({"phash": "123"}, "phash must be 16 lowercase hex digits, got '123'"),
    ],
)
def test_add_refuses_bad_values_naming_them(catalog, override, message):
    with pytest.raises(CatalogError, match=message):
        add(catalog, "a", **override)
    assert catalog.list_references() == []


def test_same_bytes_are_held_once_until_withdrawn(catalog):
    first = add(catalog, "a")
    with pytest.raises(CatalogError, match=f"already held as reference {first.id}"):
        add(catalog, "a", brand="Other")
    assert catalog.find_by_sha256(sha("a")) == first
    catalog.set_status([first.id], "withdrawn", reason="blurry")
    assert catalog.find_by_sha256(sha("a")) is None
    assert catalog.find_by_sha256(sha("a"), include_withdrawn=True).id == first.id
    again = add(catalog, "a")
    assert catalog.find_by_sha256(sha("a")) == again
    assert catalog.find_by_sha256(sha("never")) is None


def test_write_transaction_rolls_back_everything_on_error(catalog):
    kept = add(catalog, "kept")
    with pytest.raises(RuntimeError, match="boom"), catalog.write():
        add(catalog, "lost")
        catalog.set_status([kept.id], "approved")
        raise RuntimeError("boom")
    assert [ref.id for ref in catalog.list_references()] == [kept.id]
    assert catalog.get(kept.id).status == "pending"
    assert catalog.brands() == ["Acme"]
    with catalog.write():  # the connection is usable again afterwards
        add(catalog, "after")
    assert len(catalog.list_references()) == 2


VALID = [
    ("pending", "approved"),
    ("pending", "withdrawn"),
    ("approved", "indexed"),
    ("approved", "withdrawn"),
    ("indexed", "withdrawn"),
]
PATHS = {"pending": [], "approved": ["approved"], "indexed": ["approved", "indexed"]}
PATHS["withdrawn"] = ["withdrawn"]


def reach(catalog: Catalog, key: str, status: str) -> Reference:
    ref = add(catalog, key)
    for step in PATHS[status]:
        ref = catalog.set_status([ref.id], step)[0]
    return ref


@pytest.mark.parametrize(("start", "target"), VALID)
def test_valid_transitions(catalog, start, target):
    ref = reach(catalog, "a", start)
    (moved,) = catalog.set_status([ref.id], target, reason="why")
    assert moved.status == target and moved.reason == "why"
    assert moved.status_changed_at >= ref.status_changed_at
    assert catalog.get(ref.id) == moved


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (start, target)
        for start in ("pending", "approved", "indexed", "withdrawn")
        for target in ("pending", "approved", "indexed", "withdrawn")
        if (start, target) not in VALID
    ],
)
def test_invalid_transitions_are_refused_naming_both_states(catalog, start, target):
    ref = reach(catalog, "a", start)
    with pytest.raises(CatalogError, match=f"reference {ref.id}: cannot go from '{start}' to '{target}'"):
        catalog.set_status([ref.id], target)
    assert catalog.get(ref.id) == ref


def test_set_status_is_all_or_nothing(catalog):
    good = add(catalog, "good")
    final = reach(catalog, "final", "withdrawn")
    seq = catalog.high_water_mark()
    with pytest.raises(CatalogError, match="cannot go from 'withdrawn'"):
        catalog.set_status([good.id, final.id], "withdrawn")
    with pytest.raises(CatalogError, match=r"unknown reference id\(s\) \[999\]"):
        catalog.set_status([good.id, 999], "approved")
    assert catalog.get(good.id).status == "pending"
    assert catalog.high_water_mark() == seq


def test_expected_status_guards_against_a_concurrent_change(catalog):
    ref = add(catalog, "a")
    catalog.set_status([ref.id], "approved")  # someone else approved it meanwhile
    with pytest.raises(CatalogError, match=f"reference {ref.id} is 'approved', expected 'pending'"):
        catalog.set_status([ref.id], "withdrawn", expected="pending")
    assert catalog.get(ref.id).status == "approved"
    catalog.set_status([ref.id], "withdrawn", expected=("pending", "approved"))
    assert catalog.get(ref.id).status == "withdrawn"


def test_unknown_ids_and_statuses_are_named(catalog):
    with pytest.raises(CatalogError, match="unknown reference id 42"):
        catalog.get(42)
    with pytest.raises(CatalogError, match="unknown status 'gone'"):
        catalog.set_status([1], "gone")
    with pytest.raises(CatalogError, match="unknown status 'gone'"):
        catalog.list_references(status="gone")
    with pytest.raises(CatalogError, match="unknown view 'side'"):
        catalog.list_references(view="side")
    assert issubclass(CatalogError, BrandsentryError)


def test_reads_by_ids_brand_status_and_view(catalog):
    a = add(catalog, "a", brand="Acme", status="approved")
    b = add(catalog, "b", brand="Acme", view="logo")
    c = add(catalog, "c", brand="Zeta", status="approved")
    catalog.set_status([a.id], "indexed")
    assert set(catalog.get_many([a.id, c.id, 999])) == {a.id, c.id}
    assert catalog.get_many(np.array([b.id], dtype=np.int64))[b.id] == b
    assert catalog.get_many([]) == {}
    assert catalog.brand_of(np.array([c.id, a.id, 999])) == {a.id: "Acme", c.id: "Zeta"}
    ids = catalog.ids_for_brand("Acme")
    assert ids.dtype == np.int64 and ids.tolist() == [a.id]
    assert catalog.ids_for_brand("Acme", statuses=("pending", "indexed")).tolist() == [a.id, b.id]
    assert [r.id for r in catalog.list_references(brand="Acme")] == [a.id, b.id]
    assert [r.id for r in catalog.list_references(status="approved")] == [c.id]
    assert [r.id for r in catalog.list_references(status=["approved", "indexed"])] == [a.id, c.id]
    assert [r.id for r in catalog.list_references(view="logo")] == [b.id]
    assert catalog.list_references(brand="Acme", view="logo", status="approved") == []


def test_many_ids_fit_in_one_query(catalog):
    with catalog.write():
        refs = [add(catalog, f"k{i}") for i in range(1200)]
    wanted = [ref.id for ref in refs] + list(range(10_000, 50_000))
    assert len(catalog.get_many(wanted)) == 1200
    assert len(catalog.brand_of(wanted)) == 1200


def test_near_duplicates_by_hamming_distance(catalog):
    base = 0x0F0F_0F0F_0F0F_0F0F
    near = add(catalog, "near", phash=f"{base ^ 0b111:016x}")  # 3 bits away
    exact = add(catalog, "exact", phash=f"{base:016x}")
    add(catalog, "far", phash=f"{base ^ 0xFFFF_FFFF:016x}")  # 32 bits away
    other_brand = add(catalog, "other", brand="Zeta", phash=f"{base ^ 0b1:016x}")
    gone = add(catalog, "gone", phash=f"{base:016x}")
    catalog.set_status([gone.id], "withdrawn")

    found = catalog.near_duplicates(f"{base:016x}", 6)
    assert [(ref.id, distance) for ref, distance in found] == [
        (exact.id, 0),
        (other_brand.id, 1),
        (near.id, 3),
    ]
    assert [ref.id for ref, _ in catalog.near_duplicates(f"{base:016x}", 6, brand="Acme")] == [
        exact.id,
        near.id,
    ]
    assert catalog.near_duplicates(f"{base:016x}", 2, brand="Acme")[0][0].id == exact.id
    assert catalog.near_duplicates("ffffffffffffffff", 6, brand="Nobody") == []
    assert hamming(f"{base:016x}", f"{base ^ 0xFFFF_FFFF:016x}") == 32
    with pytest.raises(CatalogError, match="phash must be 16 lowercase hex digits"):
        catalog.near_duplicates("xyz", 6)


def test_index_hand_off_and_high_water_mark(catalog):
    marks = [catalog.high_water_mark()]
    a = add(catalog, "a", status="approved")
    b = add(catalog, "b", status="approved")
    pending = add(catalog, "p")
    marks.append(catalog.high_water_mark())
    assert [ref.id for ref in catalog.to_index()] == [a.id, b.id]

    # b is withdrawn while the index is being built with it: it must come back through to_remove()
    catalog.set_status([b.id], "withdrawn", reason="brand request")
    catalog.mark_indexed([a.id, b.id])
    marks.append(catalog.high_water_mark())
    assert catalog.get(a.id).status == "indexed" and catalog.get(a.id).in_index
    assert catalog.get(b.id).status == "withdrawn" and catalog.get(b.id).in_index
    assert catalog.to_index() == []
    assert [ref.id for ref in catalog.to_remove()] == [b.id]
    catalog.mark_indexed([a.id])  # idempotent
    assert catalog.get(a.id).status == "indexed"

    with pytest.raises(CatalogError, match=rf"references \[{pending.id}\] are pending"):
        catalog.mark_indexed([pending.id])
    with pytest.raises(CatalogError, match=rf"references \[{a.id}\] are not withdrawn"):
        catalog.mark_removed([a.id, b.id])

    catalog.set_status([a.id], "withdrawn")
    assert [ref.id for ref in catalog.to_remove()] == [a.id, b.id]
    catalog.mark_removed([a.id, b.id])
    marks.append(catalog.high_water_mark())
    assert catalog.to_remove() == []
    assert not catalog.get(a.id).in_index
    assert marks == sorted(set(marks)), marks  # strictly increasing


def test_threads_share_a_catalog_with_their_own_connections(catalog):
    errors = []

    def worker(number: int) -> None:
        try:
            for i in range(10):
                ref = add(catalog, f"t{number}-{i}", brand=f"B{number % 3}")
                catalog.set_status([ref.id], "approved", expected="pending")
                catalog.get_many([ref.id])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(catalog.list_references(status="approved")) == 80
    assert catalog.brands() == ["B0", "B1", "B2"]
    assert len(catalog._connections) == 9  # one per worker thread + this one


def test_closed_catalog_refuses_use(tmp_path):
    opened = Catalog(tmp_path / "c.sqlite")
    opened.close()
    with pytest.raises(CatalogError, match="is closed"):
        opened.brands()


def _add_in_child(catalog: Catalog, parent_connection, results) -> None:
    results.put((add(catalog, "from-child").id, catalog.connection() is not parent_connection))


def test_a_forked_process_opens_its_own_connections(catalog):
    add(catalog, "from-parent")  # the parent holds an open connection when it forks
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    parent_connection = catalog.connection()
    child = context.Process(target=_add_in_child, args=(catalog, parent_connection, results))  # not pickled
    child.start()
    child_id, own_connection = results.get(timeout=30)
    assert own_connection
    child.join(timeout=30)
    assert child.exitcode == 0
    assert catalog.get(child_id).source_name == "from-child.jpg"
    add(catalog, "parent-again")  # the parent's connection still works
    assert len(catalog.list_references()) == 3
