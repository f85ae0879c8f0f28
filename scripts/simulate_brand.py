"""A simulated brand representative: answers the brand's portal inbox from a synthetic world's ground truth,
through the portal's JSON API, the way a script of a brand's own would (`make demo` step 10).

    .venv/bin/python scripts/simulate_brand.py URL TOKEN LISTINGS.csv [--answers 30] [--wait 60]

URL is a running `brandsentry serve` (e.g. http://127.0.0.1:8765), TOKEN a brand token of
`brandsentry tokens create`, LISTINGS.csv a labelled manifest (listing_id, label, counterfeit_kind). The
highest-scored inbox listings are answered: a photo of no product is `not_ours`, a counterfeit
`counterfeit`, the rest `authentic`; listings missing from the manifest are left alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import urllib.error
import urllib.request


def call(url: str, token: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def inbox_when_up(base: str, token: str, wait_s: float) -> list[dict]:
    """The inbox, once the server answers (it may still be starting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return call(f"{base}/api/v1/inbox", token)
        except urllib.error.HTTPError as exc:  # the portal answered: no use waiting
            raise SystemExit(f"the portal refused the inbox: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"no portal answered at {base} within {wait_s:.0f} s") from None
            time.sleep(0.5)


def brand_answer(row: dict[str, str]) -> str:
    if row.get("counterfeit_kind") == "not_a_product":
        return "not_ours"
    return "counterfeit" if row["label"] == "counterfeit" else "authentic"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("listings")
    parser.add_argument("--answers", type=int, default=30, help="how many inbox listings to answer")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the portal to start")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    with open(args.listings, newline="", encoding="utf-8") as handle:
        truth = {row["listing_id"]: row for row in csv.DictReader(handle)}
    inbox = inbox_when_up(base, args.token, args.wait)
    ranked = sorted(inbox, key=lambda item: (-(item["score"] or 0.0), item["listing_id"]))
    chosen = [item for item in ranked if item["listing_id"] in truth][: args.answers]
    counts: dict[str, int] = {}
    for item in chosen:
        answer = brand_answer(truth[item["listing_id"]])
        listing = urllib.request.quote(item["listing_id"], safe="")
        call(f"{base}/api/v1/inbox/{listing}/answer", args.token, {"answer": answer, "run": item["run"]})
        counts[answer] = counts.get(answer, 0) + 1
    summary = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    print(f"answered {len(chosen)} of the {len(inbox)} inbox listing(s) through {base}/api/v1: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
