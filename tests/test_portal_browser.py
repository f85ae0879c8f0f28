"""The portal end to end in real headless Chromium: uvicorn on a free loopback port, sign in with a token,
upload photos through the form (naming a new product, which the picker then offers), see them listed with
thumbnails, withdraw one through its confirmation page and undo that; then an admin sees them in the review
queue. A brand answers listings of its inbox, and the answers reach the feedback ledger as the brand's.

Set BRANDSENTRY_PORTAL_SCREENSHOT=docs/images/portal.png to keep a screenshot of the review queue.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from brandsentry.config import load_config
from brandsentry.feedback import open_feedback
from brandsentry.images import decode_image
from brandsentry.index_sync import update_from_catalog
from brandsentry.ledger import record_scoring_run
from brandsentry.portal.app import create_app
from brandsentry.portal.service import UploadedFile
from brandsentry.run_folder import embeddings_path
from fake_runs import make_results, write_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
]


def product_photo(
    path: Path, wordmark: str, colour: tuple[int, int, int], side_view: bool, seed: int
) -> Path:
    """A packshot-like photo: a coloured box with a wordmark on a soft background (front or side view)."""
    rng = np.random.default_rng(seed)
    width, height = 480, 360
    if side_view:
        ramp = np.linspace(170, 235, width)[None, :, None] + rng.normal(0, 3, (height, width, 3))
        box = (60, 40, 200, 320)
    else:
        ramp = np.linspace(235, 175, height)[:, None, None] + rng.normal(0, 3, (height, width, 3))
        box = (130, 50, 350, 320)
    image = Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    centre = (left + right) // 2
    draw.rectangle((left + 12, top + 12, right + 12, bottom + 12), fill=(110, 110, 110))
    draw.rectangle(box, fill=colour, outline=(30, 30, 30), width=3)
    draw.ellipse((centre - 40, top + 40, centre + 40, top + 120), fill=(250, 245, 230))
    draw.text(
        (centre, top + 170), wordmark, fill=(255, 255, 255), anchor="mm", font=ImageFont.load_default(26)
    )
    draw.text(
        (centre, top + 215), "50 ml", fill=(240, 240, 240), anchor="mm", font=ImageFont.load_default(18)
    )
    image.save(path, quality=92)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(app):
    """The app under a real uvicorn in a thread, on a free loopback port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def chromium(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,960",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def submit_and_wait(driver, button, url: str) -> None:
    """Click a form's submit button and wait until the browser has loaded `url` (a form post navigates)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button.click()
    WebDriverWait(driver, 20).until(expected_conditions.url_to_be(url))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def sign_in(driver, base: str, token: str, lands_on: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/signin")
    driver.find_element(By.ID, "token").send_keys(token)
    submit_and_wait(driver, driver.find_element(By.ID, "signin"), f"{base}{lands_on}")


def test_sign_in_upload_and_see_it_listed_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    workspace = tmp_path / "ws"
    group = [] if "portal" in load_config() else ["+portal=default"]
    # the tiny random test embedder finds everything fairly similar: only near copies count as neighbours
    tuning = ["portal.checks.wrong_brand_min_similarity=0.9", "portal.checks.flood_similarity=0.95"]
    cfg = load_config(
        [*group, "embedder=tiny_random", "embedder.threads=1", f"workspace={workspace}", *tuning]
    )
    app = create_app(cfg)
    portal = app.state.portal
    brand_token, _ = portal.tokens.create(name="Ana (Velquora)", brand="Velquora", new_brand=True)
    other_token, _ = portal.tokens.create(name="Ben (Brisanth)", brand="Brisanth", new_brand=True)
    admin_token, _ = portal.tokens.create(name="Review desk", admin=True)
    photos = tmp_path / "photos"
    photos.mkdir()
    front = product_photo(photos / "serum-front.jpg", "VELQUORA", (150, 40, 70), side_view=False, seed=1)
    side = product_photo(photos / "serum-side.jpg", "VELQUORA", (150, 40, 70), side_view=True, seed=2)
    # another brand already holds (and has indexed) a near copy of the side shot: near-duplicate, wrong brand?
    with Image.open(side) as original:
        resized = original.resize((440, 330))
    resized.save(photos / "theirs.jpg", quality=75)
    (theirs,) = portal.upload(
        portal.tokens.verify(other_token),
        [UploadedFile("theirs.jpg", (photos / "theirs.jpg").read_bytes())],
        "Serum",
        "product",
    )
    portal.approve(portal.tokens.verify(admin_token), theirs.reference_id)
    update_from_catalog(cfg, embedder=portal.checker.embedder())
    # yesterday's scoring run saw 150 listings that look just like the front shot: flood risk
    embedder = portal.checker.embedder()
    pixels = decode_image(front, portal.limits, target_size=embedder.preprocessing.resize_size)
    rng = np.random.default_rng(0)
    listings = np.concatenate(
        [
            embedder.embed_arrays([pixels]) + rng.normal(0, 0.01, (150, embedder.dim)),
            rng.normal(0, 1, (1850, embedder.dim)),
        ]
    ).astype(np.float32)
    run = workspace / "runs" / "score" / "2026-01-30"
    embeddings_path(run, 0).parent.mkdir(parents=True)
    np.save(embeddings_path(run, 0), listings / np.linalg.norm(listings, axis=1, keepdims=True))

    try:
        with live_server(app) as base, chromium(tmp_path / "profile") as driver:
            sign_in(driver, base, brand_token, lands_on="/references")
            assert "No references yet" in driver.page_source

            driver.get(f"{base}/upload")
            Select(driver.find_element(By.ID, "product")).select_by_visible_text("New product…")
            driver.find_element(By.ID, "new_product").send_keys("Night Repair Serum")
            Select(driver.find_element(By.ID, "view")).select_by_value("packaging")
            driver.find_element(By.ID, "files").send_keys(f"{front}\n{side}")
            driver.find_element(By.ID, "upload").click()
            WebDriverWait(driver, 20).until(
                expected_conditions.presence_of_element_located((By.ID, "outcomes"))
            )
            outcomes = driver.find_element(By.ID, "outcomes").text
            assert outcomes.count("accepted") == 2, outcomes

            driver.get(f"{base}/references")
            rows = driver.find_elements(By.CSS_SELECTOR, "#references tbody tr")
            listed = {row.find_element(By.CSS_SELECTOR, "td.file").text: row.text for row in rows}
            assert set(listed) == {"serum-front.jpg", "serum-side.jpg"}
            assert all("pending" in text and "Night Repair Serum" in text for text in listed.values())
            thumbnails = driver.find_elements(By.CSS_SELECTOR, "img.thumb")
            assert len(thumbnails) == 2
            assert all(driver.execute_script("return arguments[0].naturalWidth", t) > 0 for t in thumbnails)
            driver.save_screenshot(str(tmp_path / "references.png"))

            # the product picker now offers the new product
            driver.get(f"{base}/upload")
            picker = Select(driver.find_element(By.ID, "product"))
            assert [o.text for o in picker.options] == ["Night Repair Serum", "New product…"]

            # withdraw asks first, then offers Undo, which submits the photo again as a new pending reference
            driver.get(f"{base}/references")
            row = next(
                r
                for r in driver.find_elements(By.CSS_SELECTOR, "#references tbody tr")
                if r.find_element(By.CSS_SELECTOR, "td.file").text == "serum-front.jpg"
            )
            front_id = row.get_attribute("data-reference-id")
            link = row.find_element(By.LINK_TEXT, "Withdraw…")
            submit_and_wait(driver, link, f"{base}/references/{front_id}/withdraw")
            assert f"Withdraw reference {front_id}?" in driver.page_source
            driver.find_element(By.ID, "reason").send_keys("blurry")
            submit_and_wait(
                driver,
                driver.find_element(By.ID, "confirm-withdraw"),
                f"{base}/references?withdrawn={front_id}",
            )
            assert f"Reference {front_id}" in driver.find_element(By.ID, "notice").text
            driver.find_element(By.ID, "undo").click()
            WebDriverWait(driver, 20).until(expected_conditions.url_contains("restored="))
            restored_id = driver.current_url.rsplit("=", 1)[1]
            assert f"Restored as reference {restored_id}" in driver.find_element(By.ID, "notice").text
            statuses = {
                r.get_attribute("data-reference-id"): r.find_element(By.CSS_SELECTOR, "span.status").text
                for r in driver.find_elements(By.CSS_SELECTOR, "#references tbody tr")
            }
            assert statuses[front_id] == "withdrawn" and statuses[restored_id] == "pending"

            submit_and_wait(
                driver, driver.find_element(By.CSS_SELECTOR, "form.signout button"), f"{base}/signin"
            )
            sign_in(driver, base, admin_token, lands_on="/admin/pending")
            cards = driver.find_elements(By.CSS_SELECTOR, "article.pending")
            assert len(cards) == 2
            warnings = {
                card.find_element(By.CSS_SELECTOR, ".meta").text.split(" · ")[1]: [
                    item.text for item in card.find_elements(By.CSS_SELECTOR, "ul.checks li.warning")
                ]
                for card in cards
            }
            front_warnings, side_warnings = warnings["serum-front.jpg"], warnings["serum-side.jpg"]
            assert [w.split()[0] for w in front_warnings] == ["flood_risk"]
            assert "matches 150 of 2000 recent listings" in front_warnings[0]
            assert sorted(w.split()[0] for w in side_warnings) == ["near_duplicate", "wrong_brand"]
            assert all("Brisanth" in w for w in side_warnings)
            screenshot = tmp_path / "pending.png"
            driver.save_screenshot(str(screenshot))
    finally:
        portal.close()

    with Image.open(screenshot) as shot:
        assert shot.size[0] >= 1000
    keep = os.environ.get("BRANDSENTRY_PORTAL_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        Path(keep).write_bytes(screenshot.read_bytes())


def test_a_brand_answers_its_inbox_in_chromium(tmp_path):
    """Brand A sees only its own flagged and review-queued listings, answers three, and the verdicts are in
    the ledger as the brand's, named by the token that gave them; its month's transparency report opens."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    workspace = tmp_path / "ws"
    group = [] if "portal" in load_config() else ["+portal=default"]
    cfg = load_config([*group, "embedder=tiny_random", "embedder.threads=1", f"workspace={workspace}"])
    app = create_app(cfg)
    portal = app.state.portal
    brand_token, _ = portal.tokens.create(name="Ana (Velquora)", brand="Velquora", new_brand=True)
    portal.tokens.create(name="Ben (Brisanth)", brand="Brisanth", new_brand=True)
    photos = tmp_path / "photos"
    photos.mkdir()
    paths = [
        str(product_photo(photos / f"l{i}.jpg", "VELQUORA", (40 + 20 * i, 60, 90), i % 2 == 1, seed=i))
        for i in range(10)
    ]
    results = make_results(n=10, seed=7, brands=("Velquora", "Brisanth"), image_paths=paths)
    scored = results.index[results["decision"] != "error"]
    results.loc[scored, "decision"] = ["flag", "flag", "review", "review", "flag", "pass", "pass", "flag"]
    run = write_run(tmp_path / "runs" / "2026-11-01", results)
    record_scoring_run(workspace, run)
    mine = {
        r.listing_id
        for r in results.itertuples()
        if r.claimed_brand == "Velquora" and r.decision in ("flag", "review")
    }
    assert mine and any(r.claimed_brand == "Brisanth" and r.decision == "flag" for r in results.itertuples())
    answers = {}
    try:
        with live_server(app) as base, chromium(tmp_path / "profile") as driver:
            sign_in(driver, base, brand_token, lands_on="/references")
            driver.get(f"{base}/inbox")
            rows = driver.find_elements(By.CSS_SELECTOR, "#inbox tbody tr")
            assert {row.get_attribute("data-listing-id") for row in rows} == mine
            thumbnails = driver.find_elements(By.CSS_SELECTOR, "#inbox img.thumb")
            assert len(thumbnails) == len(mine)
            assert all(driver.execute_script("return arguments[0].naturalWidth", t) > 0 for t in thumbnails)
            Select(driver.find_element(By.ID, "decision")).select_by_value("flag")
            submit_and_wait(
                driver,
                driver.find_element(By.CSS_SELECTOR, "form.filter button"),
                f"{base}/inbox?run=&decision=flag&product=",
            )
            flagged = {
                r.listing_id for r in results.itertuples() if r.listing_id in mine and r.decision == "flag"
            }
            shown = driver.find_elements(By.CSS_SELECTOR, "#inbox tbody tr")
            assert {row.get_attribute("data-listing-id") for row in shown} == flagged

            driver.get(f"{base}/inbox")
            chosen = sorted(mine)[:3]
            for listing_id, (label, note) in zip(
                chosen,
                [("Counterfeit", "fake box"), ("Authentic", ""), ("Not ours", "we make no such item")],
                strict=True,
            ):
                row = driver.find_element(By.CSS_SELECTOR, f'#inbox tr[data-listing-id="{listing_id}"]')
                if note:
                    row.find_element(By.NAME, "note").send_keys(note)
                button = row.find_element(By.XPATH, f".//button[text()='{label}']")
                submit_and_wait(
                    driver, button, f"{base}/inbox?page=1&answered={listing_id}#listing-{listing_id}"
                )
                assert f"Your answer on listing {listing_id}" in driver.find_element(By.ID, "notice").text
                answers[listing_id] = (label, note)
            driver.save_screenshot(str(tmp_path / "inbox.png"))

            # the brand's transparency report of the month, linked from the inbox, renders with its plot
            link = driver.find_element(By.CSS_SELECTOR, "a[href^='/reports/']")
            driver.get(link.get_attribute("href"))
            assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Transparency report 2026-")
            cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "table td:first-child")]
            assert cells == ["all brands", "Velquora"] and "Brisanth" not in driver.page_source
            plot = driver.find_element(By.CSS_SELECTOR, "img")
            assert driver.execute_script("return arguments[0].naturalWidth", plot) > 0
    finally:
        portal.close()

    key_id = brand_token.split("_")[1]
    with open_feedback(workspace) as catalog:
        stored = (
            catalog.connection()
            .execute(
                "SELECT listing_id, verdict, label, reviewer, note, origin, claimed_brand FROM feedback ORDER BY id"
            )
            .fetchall()
        )
    verdicts = {"Counterfeit": "confirmed_counterfeit", "Authentic": "authentic", "Not ours": "not_ours"}
    labels = {"Counterfeit": "counterfeit", "Authentic": "authentic", "Not ours": None}
    assert stored == [
        (
            listing_id,
            verdicts[label],
            labels[label],
            f"brand:Ana (Velquora)#{key_id}",
            note,
            "brand",
            "Velquora",
        )
        for listing_id, (label, note) in answers.items()
    ]
