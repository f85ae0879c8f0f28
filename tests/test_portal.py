"""The brand portal through FastAPI's TestClient: every auth rule, every upload limit, the review flow, the
submission checks, CSRF, the audit log, concurrency, and the `tokens`/`serve` commands."""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from brandsentry.catalog import Catalog
from brandsentry.cli import main
from brandsentry.config import load_config
from brandsentry.index_sync import update_from_catalog
from brandsentry.ledger import record_scoring_run
from brandsentry.portal.app import SESSION_COOKIE, create_app
from brandsentry.portal.auth import AuditLog, SessionSigner, TokenError, TokenStore, UnknownBrandError
from brandsentry.run_folder import embeddings_path
from fake_runs import make_results, write_run

LIMITS = ["portal.max_files=5", "portal.max_file_bytes=400000", "portal.max_pixels=1000000"]


@functools.cache
def portal_group_is_default() -> bool:
    return "portal" in load_config()


def portal_overrides(workspace: Path, *extra: str) -> list[str]:
    """Test config: the tiny random embedder on one thread (the box is shared), and the portal group added
    while configs/brandsentry.yaml does not list it by default."""
    group = [] if portal_group_is_default() else ["+portal=default"]
    return [*group, "embedder=tiny_random", "embedder.threads=1", f"workspace={workspace}", *extra]


def smooth_photo(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-8, 9, (height, width, 3), dtype=np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray | Image.Image, fmt: str = "JPEG", **options) -> bytes:
    image = Image.fromarray(pixels) if isinstance(pixels, np.ndarray) else pixels
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    return encode(smooth_photo(*size, seed), quality=90)


class World:
    """A portal over a temporary workspace with two brands' tokens, an admin token and a revoked token."""

    def __init__(self, tmp_path: Path, *extra: str):
        self.workspace = tmp_path / "ws"
        self.cfg = load_config(portal_overrides(self.workspace, *LIMITS, *extra))
        self.app = create_app(self.cfg)
        self.portal = self.app.state.portal
        tokens = self.portal.tokens
        self.acme, _ = tokens.create(name="alice", brand="Acme", new_brand=True)
        self.globex, _ = tokens.create(name="gus", brand="Globex", new_brand=True)
        self.admin, _ = tokens.create(name="root", admin=True)
        self.revoked, record = tokens.create(name="mallory", brand="Acme")
        tokens.revoke(record.key_id)
        self.client = TestClient(self.app)

    @staticmethod
    def auth(token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    def upload(self, token: str, *photos: tuple[str, bytes], product: str = "Widget", view: str = "product"):
        files = [("files", (name, data, "image/jpeg")) for name, data in photos]
        return self.client.post(
            "/api/v1/references",
            headers=self.auth(token),
            files=files,
            data={"product": product, "view": view},
        )

    def sign_in(self, client: TestClient, token: str):
        csrf = csrf_of(client.get("/signin").text)
        return client.post("/signin", data={"token": token, "csrf_token": csrf}, follow_redirects=False)

    def statuses(self) -> dict[int, str]:
        return {ref.id: ref.status for ref in self.portal.catalog.list_references()}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def world(tmp_path):
    world = World(tmp_path)
    yield world
    world.portal.close()


def seed(world: World) -> tuple[int, int]:
    acme = world.upload(world.acme, ("a.jpg", jpeg(1))).json()["outcomes"][0]["reference_id"]
    globex = world.upload(world.globex, ("g.jpg", jpeg(2))).json()["outcomes"][0]["reference_id"]
    return acme, globex


@pytest.fixture
def seeded(world):
    """One pending reference for each brand: (acme_id, globex_id)."""
    return seed(world)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A seeded world for the many tests that must leave it unchanged (they check that they do)."""
    world = World(tmp_path_factory.mktemp("shared"))
    yield world, seed(world)
    world.portal.close()


# -- tokens -----------------------------------------------------------------------------------------


def test_tokens_are_stored_only_as_salted_hashes(world):
    _, key_id, secret = world.acme.split("_")
    with sqlite3.connect(world.portal.catalog.path) as connection:
        rows = connection.execute("SELECT key_id, salt, secret_hash FROM portal_tokens").fetchall()
        dump = "\n".join(connection.iterdump())
    assert secret not in dump and world.acme not in dump
    assert len({salt for _, salt, _ in rows}) == len(rows) == 4
    tokens = world.portal.tokens
    assert tokens.verify(world.acme).brand == "Acme"
    assert tokens.verify(f"bst_{key_id}_{'0' * 64}") is None  # right key id, wrong secret
    assert tokens.verify(world.revoked) is None
    assert tokens.verify(world.acme + "x") is None


# -- authentication and authorisation on every endpoint ---------------------------------------------

API_ENDPOINTS = [
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/references"),
    ("POST", "/api/v1/references"),
    ("GET", "/api/v1/references/{acme}"),
    ("GET", "/api/v1/references/{acme}/thumbnail"),
    ("POST", "/api/v1/references/{acme}/withdraw"),
    ("POST", "/api/v1/references/{acme}/restore"),
    ("GET", "/api/v1/admin/pending"),
    ("POST", "/api/v1/admin/references/{acme}/approve"),
    ("POST", "/api/v1/admin/references/{acme}/reject"),
    ("GET", "/api/v1/admin/audit"),
    ("GET", "/api/v1/inbox"),
    ("POST", "/api/v1/inbox/{listing_id}/answer"),
    ("GET", "/api/v1/inbox/{listing_id}/thumbnail"),
    ("GET", "/api/v1/inbox/{listing_id}/evidence"),
    ("GET", "/api/v1/reports/{period}"),
]


def call(world: World, method: str, path: str, token: str | None, **ids):
    headers = world.auth(token) if token is not None else {}
    url = path.format(listing_id="d1-00000", period="2026-11", **ids)
    if (method, path) == ("POST", "/api/v1/references"):
        return world.client.post(
            url, headers=headers, files=[("files", ("x.jpg", jpeg(99), "image/jpeg"))], data={"product": "P"}
        )
    return world.client.request(method, url, headers=headers)


@pytest.mark.parametrize(("method", "path"), API_ENDPOINTS)
@pytest.mark.parametrize("credential", ["missing", "malformed", "wrong_secret", "revoked", "other_scheme"])
def test_every_api_endpoint_refuses_a_missing_or_invalid_token(shared, method, path, credential):
    world, seeded = shared
    before = world.statuses()
    _, key_id, _ = world.acme.split("_")
    if credential == "other_scheme":
        response = world.client.request(
            method,
            path.format(acme=seeded[0], listing_id="d1-00000", period="2026-11"),
            headers={"Authorization": f"Basic {world.acme}"},
        )
    else:
        token = {
            "missing": None,
            "malformed": "not-a-token",
            "wrong_secret": f"bst_{key_id}_{'f' * 64}",
            "revoked": world.revoked,
        }[credential]
        response = call(world, method, path, token, acme=seeded[0])
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert world.statuses() == before


ADMIN_ENDPOINTS = [(m, p) for m, p in API_ENDPOINTS if "/admin/" in p]


@pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
def test_admin_endpoints_are_forbidden_to_brand_tokens(shared, method, path):
    world, seeded = shared
    before = world.statuses()
    response = call(world, method, path, world.acme, acme=seeded[0])
    assert response.status_code == 403
    assert "admin only" in response.json()["detail"]
    assert world.statuses() == before


BRAND_ID_ENDPOINTS = [
    ("GET", "/api/v1/references/{other}"),
    ("GET", "/api/v1/references/{other}/thumbnail"),
    ("POST", "/api/v1/references/{other}/withdraw"),
]


@pytest.mark.parametrize(("method", "path"), BRAND_ID_ENDPOINTS)
def test_a_brand_token_cannot_touch_another_brands_reference(world, seeded, method, path):
    acme_id, globex_id = seeded
    before = world.statuses()
    response = world.client.request(method, path.format(other=globex_id), headers=world.auth(world.acme))
    assert response.status_code == 404
    # indistinguishable from an id that does not exist at all
    unknown = world.client.request(method, path.format(other=10_000), headers=world.auth(world.acme))
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no reference 10000"
    assert response.json()["detail"] == f"no reference {globex_id}"
    assert world.statuses() == before
    own = world.client.request(method, path.format(other=acme_id), headers=world.auth(world.acme))
    assert own.status_code == 200


def test_listing_shows_only_the_tokens_own_brand(world, seeded):
    acme_id, globex_id = seeded
    listed = world.client.get("/api/v1/references", headers=world.auth(world.acme)).json()
    assert [r["id"] for r in listed] == [acme_id]
    refused = world.client.get("/api/v1/references?brand=Globex", headers=world.auth(world.acme))
    assert refused.status_code == 403
    assert (
        world.client.get("/api/v1/references?brand=Acme", headers=world.auth(world.acme)).status_code == 200
    )
    everything = world.client.get("/api/v1/references", headers=world.auth(world.admin)).json()
    assert sorted(r["id"] for r in everything) == [acme_id, globex_id]
    one = world.client.get("/api/v1/references?brand=Globex", headers=world.auth(world.admin)).json()
    assert [r["id"] for r in one] == [globex_id]
    bad = world.client.get("/api/v1/references?status=lost", headers=world.auth(world.acme))
    assert bad.status_code == 422 and "unknown status" in bad.json()["detail"]


def test_uploads_always_belong_to_the_tokens_brand(world):
    files = [("files", ("a.jpg", jpeg(1), "image/jpeg"))]
    response = world.client.post(
        "/api/v1/references",
        headers=world.auth(world.acme),
        files=files,
        data={"product": "P", "brand": "Globex"},
    )
    assert response.status_code == 201
    assert [ref.brand for ref in world.portal.catalog.list_references()] == ["Acme"]


def test_admin_tokens_cannot_upload(world):
    response = world.upload(world.admin, ("a.jpg", jpeg(1)))
    assert response.status_code == 403
    assert world.statuses() == {}


def test_the_api_is_documented_by_openapi(world):
    schema = world.client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert paths == {p.replace("{acme}", "{ref_id}") for _, p in API_ENDPOINTS}  # pages are not in the API
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


# -- uploads: validation and limits ---------------------------------------------------------------


def test_too_many_files_is_413_and_stores_nothing(world):
    response = world.upload(world.acme, *[(f"{i}.jpg", jpeg(i)) for i in range(6)])
    assert response.status_code == 413
    assert "6 files in one upload; the limit is 5" in response.json()["detail"]
    assert world.statuses() == {}


def test_a_file_over_the_byte_limit_is_413_and_stores_nothing(world):
    noisy = np.random.default_rng(0).integers(0, 256, (500, 500, 3), dtype=np.uint8)
    big = encode(noisy, "PNG")
    assert len(big) > 400_000
    response = world.upload(world.acme, ("ok.jpg", jpeg(1)), ("big.png", big))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("big.png: ")
    assert "limit is 400000 per file" in response.json()["detail"]
    assert world.statuses() == {}


def test_a_request_body_over_the_total_limit_is_413(world):
    too_much = world.portal.settings.max_request_bytes + 1
    response = world.client.post(
        "/api/v1/references",
        headers=world.auth(world.acme),
        files=[("files", ("blob.jpg", b"\0" * too_much, "image/jpeg"))],
        data={"product": "P"},
    )
    assert response.status_code == 413
    assert world.statuses() == {}


def test_too_many_pixels_is_422_and_stores_nothing(world):
    flat = encode(np.full((1100, 1000, 3), 200, dtype=np.uint8), "PNG")  # small file, 1.1 MP declared
    assert len(flat) < 400_000
    response = world.upload(world.acme, ("ok.jpg", jpeg(1)), ("huge.png", flat))
    assert response.status_code == 422
    assert "huge.png: too many pixels" in response.json()["detail"]
    assert world.statuses() == {}


def test_undecodable_uploads_are_rejected_with_their_reason(world):
    only_bad = world.upload(world.acme, ("notes.jpg", b"this is not an image"))
    assert only_bad.status_code == 422
    (outcome,) = only_bad.json()["outcomes"]
    assert outcome["status"] == "rejected" and outcome["reason"] == "unsupported_format"
    truncated = jpeg(3)[:2000]
    mixed = world.upload(world.acme, ("good.jpg", jpeg(4)), ("cut.jpg", truncated))
    assert mixed.status_code == 201
    body = mixed.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["outcomes"][1]["reason"] in ("truncated", "corrupt")
    assert list(world.statuses().values()) == ["pending"]


def test_missing_product_or_unknown_view_is_rejected(world):
    no_product = world.upload(world.acme, ("a.jpg", jpeg(1)), product=" ")
    assert no_product.status_code == 422
    assert no_product.json()["outcomes"][0]["reason"] == "missing_product"
    bad_view = world.upload(world.acme, ("a.jpg", jpeg(1)), view="sideways")
    assert bad_view.json()["outcomes"][0]["reason"] == "unknown_view"
    assert world.statuses() == {}


def test_uploaded_filenames_never_become_paths(world):
    hostile = "../../../../outside.jpg"
    response = world.upload(world.acme, (hostile, jpeg(5)))
    assert response.status_code == 201
    (reference,) = world.portal.catalog.list_references()
    assert reference.source_name == "outside.jpg"
    stored = world.portal.store.path_of(reference.stored_path).resolve()
    assert stored.is_relative_to(world.portal.store.root.resolve())
    assert stored.name.startswith(reference.sha256)
    assert not list(world.workspace.parent.rglob("outside.jpg"))


def test_duplicates_are_reported_and_another_brands_photo_is_not_revealed(world):
    first = world.upload(world.acme, ("a.jpg", jpeg(1))).json()["outcomes"][0]
    again = world.upload(world.acme, ("copy.jpg", jpeg(1)))
    assert again.status_code == 200
    (outcome,) = again.json()["outcomes"]
    assert outcome["status"] == "duplicate" and outcome["duplicate_of"] == first["reference_id"]
    theirs = world.upload(world.globex, ("stolen.jpg", jpeg(1))).json()["outcomes"][0]
    assert theirs["status"] == "duplicate"
    assert theirs["duplicate_of"] is None and "Acme" not in theirs["detail"]
    assert str(first["reference_id"]) not in theirs["detail"]


# -- review flow, withdrawal, index -----------------------------------------------------------------


def test_brand_withdraws_its_own_reference(world, seeded):
    acme_id, _ = seeded
    response = world.client.post(
        f"/api/v1/references/{acme_id}/withdraw",
        headers=world.auth(world.acme),
        json={"reason": "old packaging"},
    )
    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"
    assert "old packaging" in response.json()["reason"]
    again = world.client.post(f"/api/v1/references/{acme_id}/withdraw", headers=world.auth(world.acme))
    assert again.status_code == 409


def test_admin_rejects_and_approves_pending_references(world, seeded):
    acme_id, globex_id = seeded
    admin = world.auth(world.admin)
    rejected = world.client.post(
        f"/api/v1/admin/references/{globex_id}/reject", headers=admin, json={"reason": "blurry"}
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "withdrawn" and rejected.json()["reason"].endswith(": blurry")
    assert (
        world.client.post(f"/api/v1/admin/references/{globex_id}/approve", headers=admin).status_code == 409
    )
    approved = world.client.post(f"/api/v1/admin/references/{acme_id}/approve", headers=admin)
    assert approved.status_code == 200
    assert world.client.post(f"/api/v1/admin/references/{acme_id}/reject", headers=admin).status_code == 409
    assert world.client.get("/api/v1/admin/pending", headers=admin).json() == []
    assert world.client.post("/api/v1/admin/references/999/approve", headers=admin).status_code == 404


def test_approvals_and_withdrawals_of_indexed_references_update_the_index(world, seeded, monkeypatch):
    import brandsentry.index_sync

    calls = []

    def update(cfg, embedder):
        calls.append(cfg)
        return brandsentry.index_sync.IndexUpdateReport(1, 1, 1, 0, False, ())

    monkeypatch.setattr(brandsentry.index_sync, "update_from_catalog", update)
    acme_id, globex_id = seeded
    world.client.post(f"/api/v1/references/{globex_id}/withdraw", headers=world.auth(world.globex))
    assert calls == []  # a pending reference was never in the index
    world.client.post(f"/api/v1/admin/references/{acme_id}/approve", headers=world.auth(world.admin))
    assert calls == [world.cfg]
    world.portal.catalog.mark_indexed([acme_id])
    world.client.post(f"/api/v1/references/{acme_id}/withdraw", headers=world.auth(world.acme))
    assert len(calls) == 2
    assert [e.outcome for e in world.portal.audit.entries(action="index_update")] == ["ok", "ok"]


def test_a_failed_index_update_leaves_the_approval_standing(world, seeded, monkeypatch):
    import brandsentry.index_sync

    def broken(cfg, embedder):
        raise OSError("disk full")

    monkeypatch.setattr(brandsentry.index_sync, "update_from_catalog", broken)
    acme_id, _ = seeded
    response = world.client.post(
        f"/api/v1/admin/references/{acme_id}/approve", headers=world.auth(world.admin)
    )
    assert response.status_code == 200
    assert world.statuses()[acme_id] == "approved"  # queued for the next `brandsentry index update`
    (entry,) = world.portal.audit.entries(action="index_update")
    assert entry.outcome == "error" and "disk full" in entry.detail["error"]


def test_approved_references_reach_the_index(world):
    from brandsentry.embed import Embedder
    from brandsentry.index import ReferenceIndex

    ids = [
        o["reference_id"]
        for o in world.upload(world.acme, ("a.jpg", jpeg(1)), ("b.jpg", jpeg(2))).json()["outcomes"]
    ]
    for ref_id in ids:
        response = world.client.post(
            f"/api/v1/admin/references/{ref_id}/approve", headers=world.auth(world.admin)
        )
        assert response.status_code == 200
    # the update ran as a background task of the approval request
    assert set(world.statuses().values()) == {"indexed"}
    identity = Embedder.from_config(world.cfg.embedder).identity.to_dict()
    index = ReferenceIndex.load(world.portal.workspace.index_dir, identity)
    assert sorted(index.live_ids().tolist()) == sorted(ids)
    updates = world.portal.audit.entries(action="index_update")
    assert updates and all(entry.outcome == "ok" for entry in updates)


# -- submission quality checks ----------------------------------------------------------------------


def test_checks_warn_about_another_brands_near_copy(tmp_path):
    world = World(tmp_path, "portal.checks.wrong_brand_min_similarity=0.9", "portal.update_index=false")
    try:
        admin = world.portal.tokens.verify(world.admin)
        pixels = smooth_photo(320, 240, 7)
        globex = world.upload(world.globex, ("original.jpg", encode(pixels, quality=92))).json()
        acme = world.upload(world.acme, ("earlier.jpg", jpeg(9))).json()
        indexed = [body["outcomes"][0]["reference_id"] for body in (globex, acme)]
        for ref_id in indexed:
            world.portal.approve(admin, ref_id)
        update_from_catalog(world.cfg)  # `brandsentry index update`
        globex_id = indexed[0]
        near_copy = encode(Image.fromarray(pixels).resize((300, 225)), quality=70)
        outcomes = world.upload(world.acme, ("copy.jpg", near_copy), ("mine.jpg", jpeg(8))).json()["outcomes"]
        copy_id, mine_id = (o["reference_id"] for o in outcomes)
        assert all(o["warnings"] == [] for o in outcomes)  # the brand is not told about other brands
        pending = world.client.get("/api/v1/admin/pending", headers=world.auth(world.admin)).json()
        checks = {item["reference"]["id"]: {c["code"]: c for c in item["checks"]} for item in pending}
        assert set(checks) == {copy_id, mine_id}
        assert checks[copy_id]["near_duplicate"]["level"] == "warning"
        assert f"reference {globex_id} (Globex" in checks[copy_id]["near_duplicate"]["message"]
        assert checks[copy_id]["wrong_brand"]["level"] == "warning"
        assert f"reference {globex_id} of 'Globex'" in checks[copy_id]["wrong_brand"]["message"]
        assert set(checks[mine_id]) == {"flood_risk_skipped"}  # no warning, the index was searched
    finally:
        world.portal.close()


def test_flood_check_counts_similar_recent_listings(tmp_path):
    world = World(tmp_path, "portal.checks.flood_similarity=0.95", "portal.checks.flood_max_matches=20")
    try:
        generic, specific = smooth_photo(320, 240, 11), smooth_photo(320, 240, 12)
        embedder = world.portal.checker.embedder()
        target = embedder.embed_arrays([generic])[0]
        rng = np.random.default_rng(0)
        # 30 listings nearly identical to the generic photo, 200 unrelated ones, in two shards of one run
        close = target + rng.normal(0, 0.01, (30, target.size)).astype(np.float32)
        far = rng.normal(0, 1, (200, target.size)).astype(np.float32)
        listings = np.concatenate([close, far])
        listings /= np.linalg.norm(listings, axis=1, keepdims=True)
        run = world.workspace / "runs" / "score" / "2026-01-01"
        embeddings_path(run, 0).parent.mkdir(parents=True)
        np.save(embeddings_path(run, 0), listings[:100].astype(np.float32))
        np.save(embeddings_path(run, 1), listings[100:].astype(np.float32))
        older = world.workspace / "runs" / "score" / "old-other-embedder"
        embeddings_path(older, 0).parent.mkdir(parents=True)
        np.save(embeddings_path(older, 0), np.ones((5, 7), dtype=np.float32))
        outcomes = world.upload(
            world.acme, ("generic.jpg", encode(generic)), ("specific.jpg", encode(specific))
        )
        generic_id, specific_id = (o["reference_id"] for o in outcomes.json()["outcomes"])
        found = world.portal.pending(world.portal.tokens.verify(world.admin))
        checks = {item.reference.id: {c.code: c for c in item.checks} for item in found}
        flood = checks[generic_id]["flood_risk"]
        assert flood.level == "warning"
        matched = int(re.search(r"matches (\d+) of 230 recent listings", flood.message).group(1))
        assert matched == 30
        assert "flood_risk" not in checks[specific_id]
    finally:
        world.portal.close()


def test_flood_check_is_skipped_with_a_note_without_listing_embeddings(world):
    world.upload(world.acme, ("a.jpg", jpeg(1)))
    (item,) = world.portal.pending(world.portal.tokens.verify(world.admin))
    notes = {c.code: c for c in item.checks}
    assert notes["flood_risk_skipped"].level == "note"
    assert "no scoring run has saved listing embeddings" in notes["flood_risk_skipped"].message
    assert notes["wrong_brand_skipped"].level == "note"


def test_ingest_warnings_reach_the_admin(world):
    world.upload(world.acme, ("small.jpg", jpeg(1, size=(120, 90))))
    (item,) = world.portal.pending(world.portal.tokens.verify(world.admin))
    assert any(c.code == "low_resolution" and c.level == "warning" for c in item.checks)


# -- HTML pages: sessions and CSRF ------------------------------------------------------------------


def test_pages_sign_in_upload_list_and_withdraw(world):
    client = TestClient(world.app)
    assert client.get("/references", follow_redirects=False).headers["location"] == "/signin"
    signed = world.sign_in(client, world.acme)
    assert signed.status_code == 303 and signed.headers["location"] == "/references"
    page = client.get("/upload")
    response = client.post(
        "/upload",
        data={"csrf_token": csrf_of(page.text), "product": "Widget", "view": "logo"},
        files=[
            ("files", ("front.jpg", jpeg(1), "image/jpeg")),
            ("files", ("back.jpg", jpeg(2), "image/jpeg")),
        ],
    )
    assert response.status_code == 201
    assert response.text.count("accepted") >= 2
    listing = client.get("/references")
    assert "front.jpg" in listing.text and "back.jpg" in listing.text and "pending" in listing.text
    ref_id = int(re.search(r'data-reference-id="(\d+)"', listing.text).group(1))
    thumb = client.get(f"/thumbnails/{ref_id}")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= world.portal.settings.thumbnail_side
    withdrawn = client.post(
        f"/references/{ref_id}/withdraw", data={"csrf_token": csrf_of(listing.text)}, follow_redirects=False
    )
    assert withdrawn.status_code == 303
    assert world.statuses()[ref_id] == "withdrawn"


def test_pages_need_a_signed_in_session(world, seeded):
    acme_id, _ = seeded
    anonymous = TestClient(world.app)
    for page in ("/", "/references", "/upload", "/admin/pending"):
        assert anonymous.get(page, follow_redirects=False).headers["location"] == "/signin", page
    assert anonymous.get(f"/thumbnails/{acme_id}").status_code == 401
    csrf = csrf_of(
        anonymous.get("/signin").text
    )  # a valid anonymous session: CSRF passes, sign-in is missing
    files = [("files", ("a.jpg", jpeg(3), "image/jpeg"))]
    assert (
        anonymous.post("/upload", data={"csrf_token": csrf, "product": "P"}, files=files).status_code == 401
    )
    for action in (
        f"/references/{acme_id}/withdraw",
        f"/admin/pending/{acme_id}/approve",
        f"/admin/pending/{acme_id}/reject",
    ):
        assert anonymous.post(action, data={"csrf_token": csrf}).status_code == 401, action
    assert set(world.statuses().values()) == {"pending"} and len(world.statuses()) == 2


def test_forms_without_the_sessions_csrf_token_are_refused(world):
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    page = client.get("/upload")
    files = [("files", ("a.jpg", jpeg(1), "image/jpeg"))]
    assert client.post("/upload", data={"product": "P"}, files=files).status_code == 403
    assert (
        client.post("/upload", data={"product": "P", "csrf_token": "guess"}, files=files).status_code == 403
    )
    assert world.statuses() == {}
    # a token from another session does not work either
    other = TestClient(world.app)
    world.sign_in(other, world.acme)
    foreign = csrf_of(other.get("/upload").text)
    assert (
        client.post("/upload", data={"product": "P", "csrf_token": foreign}, files=files).status_code == 403
    )
    ok = client.post("/upload", data={"product": "P", "csrf_token": csrf_of(page.text)}, files=files)
    assert ok.status_code == 201
    # sign-in itself needs the token of the sign-in page's session
    stranger = TestClient(world.app)
    assert stranger.post("/signin", data={"token": world.acme}).status_code == 403


def test_sign_in_refuses_bad_tokens_and_revocation_ends_sessions(world):
    client = TestClient(world.app)
    refused = world.sign_in(client, world.revoked)
    assert refused.status_code == 401 and "not valid" in refused.text
    assert world.sign_in(client, world.globex).status_code == 303
    assert client.get("/references", follow_redirects=False).status_code == 200
    world.portal.tokens.revoke(world.globex.split("_")[1])
    assert client.get("/references", follow_redirects=False).headers["location"] == "/signin"


def test_a_forged_or_expired_session_cookie_is_no_session(world):
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    body, mac = client.cookies[SESSION_COOKIE].split(".")
    assert client.get("/references", follow_redirects=False).status_code == 200
    tampered_mac = TestClient(world.app, cookies={SESSION_COOKIE: f"{body}.{mac[::-1]}"})
    assert tampered_mac.get("/references", follow_redirects=False).headers["location"] == "/signin"
    other_key = base64.urlsafe_b64encode(b'{"sid":"guessed","csrf":"x","iat":9999999999}').decode()
    tampered_body = TestClient(world.app, cookies={SESSION_COOKIE: f"{other_key.rstrip('=')}.{mac}"})
    assert tampered_body.get("/references", follow_redirects=False).headers["location"] == "/signin"
    expired = SessionSigner(b"x" * 32, max_age_s=-1)
    assert expired.loads(expired.dumps({"sid": "s", "csrf": "c"})) is None


def test_sign_out_ends_the_session_on_the_server_so_a_copied_cookie_is_dead(world):
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    copied = client.cookies[SESSION_COOKIE]
    thief = TestClient(world.app, cookies={SESSION_COOKIE: copied})
    page = thief.get("/references", follow_redirects=False)
    assert page.status_code == 200
    signed_out = client.post("/signout", data={"csrf_token": csrf_of(client.get("/references").text)})
    assert signed_out.status_code == 200 and "Sign in" in signed_out.text
    assert thief.get("/references", follow_redirects=False).headers["location"] == "/signin"
    files = [("files", ("a.jpg", jpeg(1), "image/jpeg"))]
    late = thief.post("/upload", data={"product": "P", "csrf_token": csrf_of(page.text)}, files=files)
    assert late.status_code == 403 and world.statuses() == {}
    with sqlite3.connect(world.portal.catalog.path) as connection:
        rows = connection.execute("SELECT id_hash, ended_at FROM portal_sessions").fetchall()
    assert len(rows) == 1 and rows[0][1] is not None
    assert rows[0][0] not in copied  # only a hash of the session id is stored
    assert [e.action for e in world.portal.audit.entries(action="signout")] == ["signout"]


def test_sessions_expire_on_the_server_too(world):
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    assert client.get("/references", follow_redirects=False).status_code == 200
    with sqlite3.connect(world.portal.catalog.path) as connection:  # the cookie itself is still in date
        connection.execute(
            "UPDATE portal_sessions SET expires_at = expires_at - ?",
            (world.portal.settings.session_max_age_s + 1,),
        )
    assert client.get("/references", follow_redirects=False).headers["location"] == "/signin"


def test_html_pages_apply_the_same_brand_and_admin_rules(world, seeded):
    acme_id, globex_id = seeded
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    csrf = csrf_of(client.get("/references").text)
    assert client.get(f"/thumbnails/{globex_id}").status_code == 404
    assert client.post(f"/references/{globex_id}/withdraw", data={"csrf_token": csrf}).status_code == 404
    assert client.post(f"/admin/pending/{acme_id}/approve", data={"csrf_token": csrf}).status_code == 403
    assert client.post(f"/admin/pending/{acme_id}/reject", data={"csrf_token": csrf}).status_code == 403
    assert client.get("/admin/pending").status_code == 403
    assert f'data-reference-id="{globex_id}"' not in client.get("/references").text
    assert set(world.statuses().values()) == {"pending"}
    admin = TestClient(world.app)
    assert world.sign_in(admin, world.admin).headers["location"] == "/admin/pending"
    queue = admin.get("/admin/pending")
    assert "flood_risk_skipped" in queue.text
    approve = admin.post(f"/admin/pending/{acme_id}/approve", data={"csrf_token": csrf_of(queue.text)})
    assert approve.status_code == 200  # followed the redirect back to the queue
    assert world.statuses()[acme_id] != "pending"


def test_pages_carry_security_headers(world):
    response = TestClient(world.app).get("/signin")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


# -- audit log ----------------------------------------------------------------------------------------


def test_every_action_and_refusal_is_audited(world, seeded):
    acme_id, globex_id = seeded
    world.client.post(f"/api/v1/references/{acme_id}/withdraw", headers=world.auth(world.acme))
    world.client.post(f"/api/v1/references/{globex_id}/withdraw", headers=world.auth(world.acme))  # refused
    world.client.get("/api/v1/admin/pending", headers=world.auth(world.acme))  # refused
    world.client.get("/api/v1/me")  # refused
    entries = world.client.get("/api/v1/admin/audit", headers=world.auth(world.admin)).json()
    seen = [(e["action"], e["outcome"], e["target"], e["actor"].split("#")[0]) for e in reversed(entries)]
    assert seen == [
        ("upload", "accepted", str(acme_id), "brand:alice"),
        ("upload", "accepted", str(globex_id), "brand:gus"),
        ("withdraw", "ok", str(acme_id), "brand:alice"),
        ("api_withdraw", "refused 404", str(globex_id), "brand:alice"),
        ("api_pending", "refused 403", None, "brand:alice"),
        ("api_me", "refused 401", None, "anonymous"),
    ]
    assert all(e["at"] for e in entries)
    assert (
        world.client.get("/api/v1/admin/audit?brand=Globex", headers=world.auth(world.admin)).json()[0][
            "action"
        ]
        == "upload"
    )


# -- concurrency ------------------------------------------------------------------------------------


def test_concurrent_uploads_lose_nothing_and_duplicate_nothing(world):
    """24 requests at once: 12 distinct photos, each sent twice (by the same or the other brand)."""
    photos = {seed: jpeg(100 + seed) for seed in range(12)}
    jobs = [(seed, world.acme if seed % 3 else world.globex) for seed in photos] * 2
    start = threading.Barrier(len(jobs))

    def send(job):
        seed, token = job
        start.wait()
        return seed, world.upload(token, (f"{seed}.jpg", photos[seed]))

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(send, jobs))
    assert all(response.status_code in (200, 201) for _, response in results)
    by_seed: dict[int, list[dict]] = {}
    for seed, response in results:
        by_seed.setdefault(seed, []).extend(response.json()["outcomes"])
    references = world.portal.catalog.list_references()
    assert len(references) == len(photos)
    assert len({ref.sha256 for ref in references}) == len(photos)
    for seed, outcomes in by_seed.items():
        assert sorted(o["status"] for o in outcomes) == ["accepted", "duplicate"], seed
        accepted = next(o for o in outcomes if o["status"] == "accepted")
        duplicate = next(o for o in outcomes if o["status"] == "duplicate")
        assert duplicate["duplicate_of"] == accepted["reference_id"]
        assert world.portal.catalog.get(accepted["reference_id"]).brand == ("Acme" if seed % 3 else "Globex")
    for ref in references:
        assert world.portal.store.path_of(ref.stored_path).read_bytes() == photos[int(ref.source_name[:-4])]
    assert len(world.portal.audit.entries(action="upload")) == len(jobs)


# -- commands -----------------------------------------------------------------------------------------


def test_tokens_command_creates_lists_and_revokes(tmp_path, capsys):
    workspace = f"workspace={tmp_path / 'ws'}"
    assert main(["tokens", "create", "--brand", "Acme", "--new-brand", "--name", "alice", workspace]) == 0
    out = capsys.readouterr().out
    token = re.search(r"^(bst_\S+)$", out, re.M).group(1)
    key_id = token.split("_")[1]
    assert main(["tokens", "create", "--admin", "--name", "root", workspace]) == 0
    capsys.readouterr()
    with Catalog.open(tmp_path / "ws") as catalog:
        assert TokenStore(catalog).verify(token).brand == "Acme"
    assert main(["tokens", "list", workspace]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and token.split("_")[2] not in listing
    assert "2 token(s): 2 active, 0 revoked" in listing
    assert main(["tokens", "revoke", key_id, "123456789abc", workspace]) == 1
    out = capsys.readouterr().out
    assert f"revoked      {key_id}" in out and "not revoked  123456789abc" in out
    with Catalog.open(tmp_path / "ws") as catalog:
        assert TokenStore(catalog).verify(token) is None
        actions = [entry.action for entry in reversed(AuditLog(catalog).entries())]
    assert actions == ["token_create", "token_create", "token_revoke"]
    with pytest.raises(SystemExit):
        main(["tokens", "create", "--name", "nobody", workspace])  # neither --brand nor --admin


def test_a_token_for_an_unknown_brand_is_refused_with_the_closest_known_brand(world, capsys):
    world.upload(world.acme, ("a.jpg", jpeg(1)))
    tokens = world.portal.tokens
    with pytest.raises(UnknownBrandError, match=r"unknown brand 'Acmee': did you mean 'Acme'\?") as refused:
        tokens.create(name="typo", brand="Acmee")
    assert refused.value.suggestion == "Acme"
    with pytest.raises(UnknownBrandError, match=r"'acme'.*did you mean 'Acme'"):
        tokens.create(name="case", brand="acme")
    with pytest.raises(UnknownBrandError, match=r"'Zzyzx'.*known brands: Acme, Globex"):
        tokens.create(name="far", brand="Zzyzx")
    assert [r.name for r in tokens.list()] == ["alice", "gus", "root", "mallory"]  # nothing stored
    _, record = tokens.create(name="deliberate", brand="Acmee", new_brand=True)
    assert record.brand == "Acmee"
    _, again = tokens.create(name="second", brand="Acmee")  # known now, through its first token
    assert again.brand == "Acmee"
    with pytest.raises(TokenError, match="an admin token has no brand"):
        tokens.create(name="root2", admin=True, new_brand=True)


def test_tokens_command_refuses_a_brand_typo_unless_new_brand(tmp_path, capsys):
    workspace = f"workspace={tmp_path / 'ws'}"
    assert main(["tokens", "create", "--brand", "Kalvessa", "--name", "ana", workspace]) == 2
    assert "the workspace knows no brands yet" in capsys.readouterr().err
    assert main(["tokens", "create", "--brand", "Kalvessa", "--new-brand", "--name", "ana", workspace]) == 0
    capsys.readouterr()
    assert main(["tokens", "create", "--brand", "Kalvesa", "--name", "ben", workspace]) == 2
    err = capsys.readouterr().err
    assert "unknown brand 'Kalvesa': did you mean 'Kalvessa'?" in err and "--new-brand" in err
    with Catalog.open(tmp_path / "ws") as catalog:
        assert [r.brand for r in TokenStore(catalog).list()] == ["Kalvessa"]


def test_serve_command_runs_uvicorn_on_the_configured_address(tmp_path, monkeypatch, capsys):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    overrides = portal_overrides(tmp_path / "ws", "portal.port=8765")
    assert main(["serve", *overrides]) == 0
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8765)
    assert seen["app"].state.portal.workspace.root == (tmp_path / "ws").resolve()
    assert "http://127.0.0.1:8765/" in capsys.readouterr().out
    seen["app"].state.portal.close()


def test_unknown_browser_urls_get_the_html_404_page_and_api_urls_keep_json(world, seeded):
    acme_id, globex_id = seeded
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    cookie = client.cookies[SESSION_COOKIE]
    for path in ("/nope", "/references/abc/withdraw", f"/references/{globex_id}/withdraw", "/static/x.css"):
        page = client.get(path)
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert "<h1>404</h1>" in page.text and "alice" in page.text, path  # still signed in
    assert client.cookies[SESSION_COOKIE] == cookie
    assert client.get("/signout").status_code == 405  # a GET cannot sign out
    bad_page = client.get("/references?page=two")
    assert bad_page.status_code == 422 and "&#39;two&#39;" in bad_page.text
    anonymous = TestClient(world.app).get("/nope")
    assert anonymous.status_code == 404 and "There is no page at /nope" in anonymous.text
    for path in ("/api/v1/nope", "/api/v1/references/abc", f"/api/v1/references/{globex_id}"):
        answer = client.get(path, headers=world.auth(world.acme))
        assert answer.headers["content-type"] == "application/json", path
        assert answer.status_code in (404, 422) and "detail" in answer.json(), path


# -- withdraw: confirmation and undo ------------------------------------------------------------------


def test_restore_resubmits_a_withdrawn_photo_as_a_new_pending_reference(world, seeded):
    acme_id, globex_id = seeded
    auth = world.auth(world.acme)
    assert world.client.post(f"/api/v1/references/{acme_id}/restore", headers=auth).status_code == 409
    world.client.post(f"/api/v1/references/{acme_id}/withdraw", headers=auth, json={"reason": "oops"})
    restored = world.client.post(f"/api/v1/references/{acme_id}/restore", headers=auth)
    assert restored.status_code == 201, restored.text
    new = restored.json()
    assert new["id"] not in (acme_id, globex_id) and new["status"] == "pending"
    old = world.portal.catalog.get(acme_id)
    assert (new["sha256"], new["product"], new["view"]) == (old.sha256, old.product, old.view)
    assert old.status == "withdrawn"  # withdrawn stays final: the restore is a new reference
    assert [item.reference.id for item in world.portal.pending(world.portal.tokens.verify(world.admin))] == [
        globex_id,
        new["id"],
    ]  # back in the review queue, with its checks
    again = world.client.post(f"/api/v1/references/{acme_id}/restore", headers=auth)
    assert again.status_code == 409 and f"same bytes as reference {new['id']}" in again.json()["detail"]
    (entry,) = world.portal.audit.entries(action="restore")
    assert entry.target == str(new["id"]) and entry.detail == {"restored_from": acme_id}


def test_restore_of_a_guessed_or_another_brands_id_is_not_found(world, seeded):
    acme_id, globex_id = seeded
    world.client.post(f"/api/v1/references/{globex_id}/withdraw", headers=world.auth(world.globex))
    before = world.statuses()
    for ref_id in (globex_id, 10_000, -1):
        answer = world.client.post(f"/api/v1/references/{ref_id}/restore", headers=world.auth(world.acme))
        assert answer.status_code == 404 and answer.json()["detail"] == f"no reference {ref_id}"
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    csrf = csrf_of(client.get("/references").text)
    for ref_id in (globex_id, 10_000):
        confirm = client.get(f"/references/{ref_id}/withdraw")
        assert confirm.status_code == 404 and f"no reference {ref_id}" in confirm.text
        assert client.post(f"/references/{ref_id}/restore", data={"csrf_token": csrf}).status_code == 404
    assert world.statuses() == before


def test_withdraw_asks_for_confirmation_and_offers_undo(world, seeded):
    acme_id, _ = seeded
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    listing = client.get("/references")
    assert f'href="/references/{acme_id}/withdraw"' in listing.text
    assert f'action="/references/{acme_id}/withdraw"' not in listing.text  # no one-click withdrawal
    confirm = client.get(f"/references/{acme_id}/withdraw")
    assert confirm.status_code == 200 and f"Withdraw reference {acme_id}?" in confirm.text
    assert "new pending reference" in confirm.text
    assert world.statuses()[acme_id] == "pending"  # asking changes nothing
    done = client.post(
        f"/references/{acme_id}/withdraw",
        data={"csrf_token": csrf_of(confirm.text), "reason": "wrong shot"},
        follow_redirects=False,
    )
    assert done.headers["location"] == f"/references?withdrawn={acme_id}"
    notice = client.get(done.headers["location"])
    assert f"Reference {acme_id}" in notice.text and 'id="undo"' in notice.text
    assert "wrong shot" in notice.text
    undone = client.post(
        f"/references/{acme_id}/restore", data={"csrf_token": csrf_of(notice.text)}, follow_redirects=False
    )
    new_id = int(undone.headers["location"].rsplit("=", 1)[1])
    assert world.statuses()[acme_id] == "withdrawn" and world.statuses()[new_id] == "pending"
    assert f"Restored as reference {new_id}" in client.get(undone.headers["location"]).text
    # a guessed id in the notice's query string shows nothing
    assert "Restored as" not in client.get("/references?restored=10000").text


# -- the references list: paging, search, brand filter -------------------------------------------------


def test_references_list_pages_and_searches(tmp_path):
    world = World(tmp_path, "portal.page_size=2")
    try:
        for number, product in enumerate(["Body Lotion", "Body Lotion", "Face Cream", "Hand Soap", "Serum"]):
            world.upload(world.acme, (f"shot-{number}.jpg", jpeg(10 + number)), product=product)
        world.upload(world.globex, ("g.jpg", jpeg(30)), product="Face Cream")
        client = TestClient(world.app)
        world.sign_in(client, world.acme)

        def listed(query: str) -> tuple[list[str], str]:
            page = client.get(f"/references?{query}")
            assert page.status_code == 200, page.text
            files = re.findall(r'<td class="file">([^<]*)</td>', page.text)
            return files, re.search(r'id="page-info">([^<]*)<', page.text).group(1)

        assert listed("") == (["shot-4.jpg", "shot-3.jpg"], "5 references · page 1 of 3")
        assert listed("page=3") == (["shot-0.jpg"], "5 references · page 3 of 3")
        assert listed("page=99")[1] == "5 references · page 3 of 3"  # clamped, not an empty page
        assert listed("q=lotion") == (["shot-1.jpg", "shot-0.jpg"], "2 references · page 1 of 1")
        assert listed("q=SHOT-3") == (["shot-3.jpg"], "1 reference · page 1 of 1")
        assert listed("q=face")[0] == ["shot-2.jpg"]  # Globex's Face Cream is not Acme's to see
        first = client.get("/references?q=o&status=pending")
        assert 'href="/references?status=pending&amp;q=o&amp;page=2"' in first.text  # filters kept
        assert "No reference matches" in client.get("/references?q=nothing").text
        assert 'id="brand"' not in first.text  # brand users have one brand
        assert client.get("/references?brand=Globex").status_code == 403

        admin = TestClient(world.app)
        world.sign_in(admin, world.admin)
        page = admin.get("/references?brand=Globex")
        assert '<option value="Globex" selected>' in page.text and '<option value="Acme" >' in page.text
        assert re.findall(r'<td class="file">([^<]*)</td>', page.text) == ["g.jpg"]
        assert "6 references" in admin.get("/references").text
    finally:
        world.portal.close()


# -- products: pick an existing one, or name a new one ------------------------------------------------


def test_a_typed_product_name_that_means_an_existing_product_is_filed_under_it(tmp_path):
    world = World(tmp_path)
    try:
        kalvessa, _ = world.portal.tokens.create(name="kim", brand="Kalvessa", new_brand=True)
        world.upload(kalvessa, ("a.jpg", jpeg(1)), product="kalvessa-body-lotion")
        for number, typed in enumerate(["Body Lotion", "body lotion ", "Kalvessa Body-Lotion"], start=2):
            answer = world.upload(kalvessa, (f"{number}.jpg", jpeg(number)), product=typed)
            assert answer.status_code == 201, answer.text
            assert answer.json()["product"] == "kalvessa-body-lotion"
        world.upload(kalvessa, ("new.jpg", jpeg(9)), product="Body Lotion Travel Size")
        products = [ref.product for ref in world.portal.catalog.list_references(brand="Kalvessa")]
        assert products == ["kalvessa-body-lotion"] * 4 + ["Body Lotion Travel Size"]
        # another brand's product of the same name is not a match
        world.upload(world.acme, ("acme.jpg", jpeg(20)), product="Body Lotion")
        assert world.portal.catalog.list_references(brand="Acme")[0].product == "Body Lotion"
    finally:
        world.portal.close()


def test_the_upload_form_offers_the_brands_products_and_a_new_product_choice(world):
    world.upload(world.acme, ("a.jpg", jpeg(1)), product="Widget")
    world.upload(world.globex, ("g.jpg", jpeg(2)), product="Gadget")
    client = TestClient(world.app)
    world.sign_in(client, world.acme)
    form = client.get("/upload").text
    options = re.findall(r'<option value="([^"]*)"', form.split('id="product"')[1].split("</select>")[0])
    assert options == ["Widget", ""]  # the brand's own products, then "New product…"
    files = [("files", ("b.jpg", jpeg(3), "image/jpeg"))]
    picked = client.post(
        "/upload", data={"csrf_token": csrf_of(form), "product": "Widget", "view": "logo"}, files=files
    )
    assert picked.status_code == 201 and '<strong id="filed-under">Widget</strong>' in picked.text
    files = [("files", ("c.jpg", jpeg(4), "image/jpeg"))]
    typed = client.post(
        "/upload", data={"csrf_token": csrf_of(form), "product": "", "new_product": " widget"}, files=files
    )
    assert typed.status_code == 201 and '<strong id="filed-under">Widget</strong>' in typed.text
    both = client.post(
        "/upload",
        data={"csrf_token": csrf_of(form), "product": "Widget", "new_product": "Gizmo"},
        files=[("files", ("d.jpg", jpeg(5), "image/jpeg"))],
    )
    assert both.status_code == 422 and "&#39;Gizmo&#39;" in both.text
    assert [r.product for r in world.portal.catalog.list_references(brand="Acme")] == ["Widget"] * 3


# -- the brand inbox ---------------------------------------------------------------------------------


def decided(results, decisions: list[str], products: list[str] | None = None):
    """`results` with these decisions (and claimed products) on its non-error rows, in order."""
    rows = results.index[results["decision"] != "error"]
    results.loc[rows, "decision"] = decisions
    if products is not None:
        results.loc[rows, "claimed_product"] = products
    return results


class Inbox:
    """Three scoring runs in the ledger: day1 with Acme and Globex listings (evidence for d1-00000 and
    d1-00001), day2 with Globex only, day3 with Acme only. Acme's inbox: d1-00000 (flag, acme-p0),
    d1-00002 (review, acme-p1), d1-00006 (flag, acme-p1), d1-00008 (review, acme-p0), d3-00000 and
    d3-00001 (flag, acme-p0)."""

    ACME_DAY1 = ["d1-00000", "d1-00002", "d1-00006", "d1-00008"]
    ACME_DAY3 = ["d3-00000", "d3-00001"]

    def __init__(self, world: World, tmp_path: Path):
        self.world = world
        photos = tmp_path / "listing-photos"
        photos.mkdir()

        def images(day: int, n: int) -> list[str]:
            paths = [photos / f"d{day}-{i}.jpg" for i in range(n)]
            for i, path in enumerate(paths):
                path.write_bytes(jpeg(100 * day + i, (400, 300)))
            return [str(p) for p in paths]

        cycle = ["flag", "review", "pass"]
        day1 = make_results(n=12, seed=3, day=1, brands=("Acme", "Globex"), image_paths=images(1, 12))
        day1 = decided(
            day1,
            [cycle[(i // 2) % 3] for i in range(10)],
            [f"{('acme', 'globex')[i % 2]}-p{(i // 2) % 2}" for i in range(10)],
        )
        day2 = make_results(n=5, seed=4, day=2, brands=("Globex",), image_paths=images(2, 5))
        day2 = decided(day2, ["flag", "review", "flag"])
        day3 = make_results(
            n=4,
            seed=5,
            day=3,
            brands=("Acme",),
            image_paths=images(3, 4),
            scored_at="2026-11-03T06:00:00+00:00",
        )
        day3 = decided(day3, ["flag", "flag"], ["acme-p0", "acme-p0"])
        runs = tmp_path / "runs"
        self.runs = {
            name: write_run(runs / name, frame)
            for name, frame in (("day1", day1), ("day2", day2), ("day3", day3))
        }
        evidence = self.runs["day1"] / "_evidence"
        evidence.mkdir()
        items = []
        for rank, listing_id in enumerate(["d1-00000", "d1-00001"], start=1):
            name = f"{rank:03d}-{listing_id}.jpg"
            (evidence / name).write_bytes(jpeg(900 + rank, (600, 300)))
            items.append({"listing_id": listing_id, "image_file": name})
        (evidence / "items.json").write_text(json.dumps(items))
        for run in self.runs.values():
            record_scoring_run(world.workspace, run)

    def get(self, token: str, path: str, **params):
        return self.world.client.get(path, headers=self.world.auth(token), params=params)

    def answer(self, token: str, listing_id: str, answer: str, note: str = "", run: str | None = None):
        body = {"answer": answer, "note": note, **({"run": run} if run else {})}
        return self.world.client.post(
            f"/api/v1/inbox/{listing_id}/answer", headers=self.world.auth(token), json=body
        )

    def feedback(self) -> list[tuple]:
        with sqlite3.connect(self.world.portal.catalog.path) as connection:
            return connection.execute(
                "SELECT listing_id, verdict, label, reviewer, note, origin, source, run_dir FROM feedback ORDER BY id"
            ).fetchall()


@pytest.fixture
def inbox(world, tmp_path):
    return Inbox(world, tmp_path)


def test_the_inbox_lists_only_the_brands_flagged_and_review_listings(inbox):
    world = inbox.world
    acme = inbox.get(world.acme, "/api/v1/inbox")
    assert acme.status_code == 200, acme.text
    items = acme.json()
    assert sorted(item["listing_id"] for item in items) == sorted(inbox.ACME_DAY1 + inbox.ACME_DAY3)
    assert {item["decision"] for item in items} == {"flag", "review"}
    assert all(item["product"].startswith("acme-") for item in items)
    assert items[0]["run"] == "day3"  # newest scoring first
    by_id = {item["listing_id"]: item for item in items}
    assert by_id["d1-00000"]["evidence_url"] == "/api/v1/inbox/d1-00000/evidence?run=day1"
    assert by_id["d1-00002"]["evidence_url"] is None
    assert by_id["d1-00000"]["seller_id"] == "s000" and by_id["d1-00000"]["answer"] is None
    globex = {item["listing_id"] for item in inbox.get(world.globex, "/api/v1/inbox").json()}
    assert globex == {"d1-00001", "d1-00003", "d1-00007", "d1-00009", "d2-00000", "d2-00001", "d2-00002"}
    admin = inbox.get(world.admin, "/api/v1/inbox")
    assert admin.status_code == 403 and "belongs to a brand" in admin.json()["detail"]


def test_a_brand_gets_the_transparency_report_of_its_own_listings_only(inbox):
    world = inbox.world
    flags = [i for i in inbox.get(world.acme, "/api/v1/inbox").json() if i["decision"] == "flag"]
    report = inbox.get(world.acme, "/api/v1/reports/2026-11")
    assert report.status_code == 200, report.text
    numbers = report.json()
    assert numbers["brand"] == "Acme" and list(numbers["brands"]) == ["Acme"]
    assert numbers["overall"]["flagged"] == len(flags) == 4 and numbers["overall"]["scanned"] >= 6
    client = TestClient(world.app)
    assert world.sign_in(client, world.acme).status_code == 303
    assert 'href="/reports/2026-11"' in client.get("/inbox").text
    page = client.get("/reports/2026-11")
    assert page.status_code == 200 and "Globex" not in page.text and "Acme" in page.text
    assert page.headers["content-disposition"] == 'inline; filename="transparency-2026-11-acme.html"'
    assert page.headers["content-security-policy"].startswith("default-src 'none'; img-src data:")
    empty = inbox.get(world.acme, "/api/v1/reports/2026-10")
    assert empty.status_code == 404 and "Globex" not in empty.json()["detail"]
    bad = inbox.get(world.acme, "/api/v1/reports/2026-13")
    assert bad.status_code == 422 and "'2026-13'" in bad.json()["detail"]
    assert inbox.get(world.admin, "/api/v1/reports/2026-11").status_code == 403


def test_admins_see_the_latest_sellers_report_and_brands_do_not(world):
    client = TestClient(world.app)
    assert client.get("/admin/sellers", follow_redirects=False).headers["location"] == "/signin"
    assert world.sign_in(client, world.admin).status_code == 303
    missing = client.get("/admin/sellers")
    assert missing.status_code == 404 and "brandsentry sellers report" in missing.text
    reports = world.portal.workspace.root / "reports" / "sellers"
    for stamp in ("20261101T060000000000Z", "20261102T060000000000Z"):
        (reports / stamp).mkdir(parents=True)
        (reports / stamp / "sellers.html").write_text(f"<html><body><h1>sellers {stamp}</h1></body></html>")
    page = client.get("/admin/sellers")
    assert page.status_code == 200 and "sellers 20261102T060000000000Z" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert 'href="/admin/sellers"' in client.get("/admin/pending").text
    brand = TestClient(world.app)
    assert world.sign_in(brand, world.acme).status_code == 303
    refused = brand.get("/admin/sellers")
    assert refused.status_code == 403 and "sellers 2026" not in refused.text


def test_the_inbox_filters_by_run_decision_and_product(inbox):
    token = inbox.world.acme

    def ids(**params):
        response = inbox.get(token, "/api/v1/inbox", **params)
        assert response.status_code == 200, response.text
        return sorted(item["listing_id"] for item in response.json())

    assert ids(run="day3") == inbox.ACME_DAY3
    assert ids(run="day1") == inbox.ACME_DAY1
    assert ids(decision="review") == ["d1-00002", "d1-00008"]
    assert ids(product="acme-p1") == ["d1-00002", "d1-00006"]
    assert ids(run="day1", decision="flag", product="acme-p0") == ["d1-00000"]
    bad = inbox.get(token, "/api/v1/inbox", decision="pass")
    assert bad.status_code == 422 and "'pass'" in bad.json()["detail"]


def test_another_brands_listings_and_runs_are_not_found(inbox):
    world = inbox.world
    for listing_id in ("d1-00001", "d2-00000", "d1-00004", "no-such-listing"):  # Globex's, Acme's pass, none
        answered = inbox.answer(world.acme, listing_id, "counterfeit")
        assert answered.status_code == 404, answered.text
        assert answered.json()["detail"] == f"no listing {listing_id!r} in the inbox"
        for path in (f"/api/v1/inbox/{listing_id}/thumbnail", f"/api/v1/inbox/{listing_id}/evidence"):
            response = inbox.get(world.acme, path)
            assert response.status_code == 404 and response.json()["detail"] == answered.json()["detail"]
    day2 = inbox.get(world.acme, "/api/v1/inbox", run="day2")  # Globex's run only
    assert day2.status_code == 404 and day2.json()["detail"] == "no run 'day2' in the inbox"
    assert (
        inbox.get(world.acme, "/api/v1/inbox", run="elsewhere").json()["detail"]
        == "no run 'elsewhere' in the inbox"
    )
    pinned = inbox.answer(world.acme, "d1-00000", "counterfeit", run="day2")
    assert pinned.status_code == 404
    assert pinned.json()["detail"] == "no listing 'd1-00000' in the inbox of run 'day2'"
    assert inbox.get(world.acme, "/api/v1/inbox/d1-00000/evidence", run="day2").status_code == 404
    for run_dir in (inbox.runs["day2"], inbox.runs["day1"]):  # runs are named by folder name, never by path
        assert inbox.get(world.acme, "/api/v1/inbox", run=str(run_dir)).status_code == 404
        assert inbox.answer(world.acme, "d1-00000", "counterfeit", run=str(run_dir)).status_code == 404
    assert inbox.feedback() == []
    refused = world.portal.audit.entries(action="api_answer")
    assert {(e.target, e.outcome) for e in refused} >= {
        ("d1-00001", "refused 404"),
        ("d2-00000", "refused 404"),
    }


def test_answers_go_to_the_feedback_ledger_as_the_brands_and_a_new_one_supersedes(inbox):
    world = inbox.world
    first = inbox.answer(world.acme, "d1-00000", "counterfeit", note="  fake box  ")
    assert first.status_code == 200, first.text
    assert first.json()["answer"] == "counterfeit" and first.json()["note"] == "fake box"
    key_id = world.acme.split("_")[1]
    actor = f"brand:alice#{key_id}"
    assert first.json()["reviewer"] == actor and first.json()["run"] == "day1"
    run_dir = str(inbox.runs["day1"].resolve())
    assert inbox.feedback() == [
        ("d1-00000", "confirmed_counterfeit", "counterfeit", actor, "fake box", "brand", "portal", run_dir)
    ]
    again = inbox.answer(world.acme, "d1-00000", "not_ours", note="not our product line")
    assert again.status_code == 200
    assert inbox.feedback() == [
        ("d1-00000", "not_ours", None, actor, "not our product line", "brand", "portal", run_dir)
    ]
    assert inbox.answer(world.acme, "d3-00001", "authentic").status_code == 200
    listed = {item["listing_id"]: item["answer"] for item in inbox.get(world.acme, "/api/v1/inbox").json()}
    assert listed["d1-00000"]["answer"] == "not_ours" and listed["d3-00001"]["answer"] == "authentic"
    assert listed["d1-00002"] is None
    bad = inbox.answer(world.acme, "d1-00002", "fake")
    assert bad.status_code == 422 and "fake" in bad.text
    audited = world.portal.audit.entries(action="answer")
    assert [(e.target, e.detail["answer"], e.outcome) for e in audited] == [
        ("d3-00001", "authentic", "ok"),
        ("d1-00000", "not_ours", "ok"),
        ("d1-00000", "counterfeit", "ok"),
    ]


def test_a_failed_answer_stores_nothing(inbox, monkeypatch):
    """The answer and its audit row share one transaction: a failing audit write leaves no verdict."""
    world = inbox.world

    def broken(**kwargs):
        if kwargs["action"] == "answer":
            raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(world.portal.audit, "record", broken)
    with pytest.raises(sqlite3.OperationalError):
        world.portal.inbox.answer(world.portal.tokens.verify(world.acme), "d1-00000", "counterfeit")
    assert inbox.feedback() == []


def test_inbox_thumbnails_and_evidence_are_served_resized_to_the_brand(inbox):
    world = inbox.world
    thumb = inbox.get(world.acme, "/api/v1/inbox/d1-00000/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    side = world.portal.settings.thumbnail_side
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) == side and image.size[0] > image.size[1]  # 400x300 scaled down
    evidence = inbox.get(world.acme, "/api/v1/inbox/d1-00000/evidence", run="day1")
    assert evidence.status_code == 200
    assert evidence.content == (inbox.runs["day1"] / "_evidence" / "001-d1-00000.jpg").read_bytes()
    none = inbox.get(world.acme, "/api/v1/inbox/d1-00002/evidence")
    assert (
        none.status_code == 404
        and none.json()["detail"] == "no evidence for listing 'd1-00002' in run 'day1'"
    )
    assert inbox.get(world.globex, "/api/v1/inbox/d1-00001/evidence").status_code == 200


def test_the_inbox_page_lists_filters_and_answers_through_forms(inbox):
    world = inbox.world
    client = TestClient(world.app)
    assert client.get("/inbox", follow_redirects=False).headers["location"] == "/signin"
    assert world.sign_in(client, world.acme).status_code == 303
    page = client.get("/inbox")
    assert page.status_code == 200
    shown = set(re.findall(r'data-listing-id="([^"]+)"', page.text))
    assert shown == set(inbox.ACME_DAY1 + inbox.ACME_DAY3)
    assert 'src="/inbox/d1-00000/thumbnail"' in page.text
    assert 'href="/inbox/d1-00000/evidence?run=day1"' in page.text
    filtered = client.get("/inbox", params={"decision": "review", "product": "acme-p1"})
    assert set(re.findall(r'data-listing-id="([^"]+)"', filtered.text)) == {"d1-00002"}
    csrf = csrf_of(page.text)
    posted = client.post(
        "/inbox/d1-00002/answer",
        data={
            "answer": "authentic",
            "note": "ours, sold by a partner",
            "run": "day1",
            "back": "decision=review",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert posted.status_code == 303
    assert posted.headers["location"] == "/inbox?decision=review&answered=d1-00002#listing-d1-00002"
    notice = client.get(posted.headers["location"])
    assert "Your answer on listing d1-00002" in notice.text and "ours, sold by a partner" in notice.text
    assert [row[:2] + row[5:6] for row in inbox.feedback()] == [("d1-00002", "authentic", "brand")]
    forged = client.post("/inbox/d1-00006/answer", data={"answer": "counterfeit", "csrf_token": "x"})
    assert forged.status_code == 403
    other = client.post("/inbox/d1-00001/answer", data={"answer": "counterfeit", "csrf_token": csrf})
    assert other.status_code == 404 and "no listing" in other.text
    assert client.get("/inbox/d1-00001/thumbnail").status_code == 404
    assert len(inbox.feedback()) == 1


def test_the_inbox_page_pages_and_an_answer_returns_to_its_page(tmp_path):
    world = World(tmp_path, "portal.page_size=4")
    try:
        inbox = Inbox(world, tmp_path)
        client = TestClient(world.app)
        world.sign_in(client, world.acme)

        def shown(html: str) -> list[str]:
            return re.findall(r'data-listing-id="([^"]+)"', html)

        first, second = client.get("/inbox").text, client.get("/inbox", params={"page": 2}).text
        assert len(shown(first)) == 4 and len(shown(second)) == 2
        assert sorted(shown(first) + shown(second)) == sorted(inbox.ACME_DAY1 + inbox.ACME_DAY3)
        assert "6 listings · page 2 of 2" in second and 'href="/inbox?page=1"' in second
        assert shown(client.get("/inbox", params={"page": 99}).text) == shown(second)  # clamped
        listing_id = shown(second)[0]
        posted = client.post(
            f"/inbox/{listing_id}/answer",
            data={
                "answer": "counterfeit",
                "back": "page=2&next=https://elsewhere",
                "csrf_token": csrf_of(first),
            },
            follow_redirects=False,
        )
        assert posted.headers["location"] == f"/inbox?page=2&answered={listing_id}#listing-{listing_id}"
    finally:
        world.portal.close()
