#!/usr/bin/env bash
# `make demo`: the whole story on the bundled synthetic brand world, CPU only.
#   world -> references -> index -> train (MLflow) -> promote -> score day 1 and day 2 -> review in MLflow
#   -> simulated reviewer verdicts -> a simulated brand representative answers its portal inbox -> retrain
#   with both -> summary table -> sellers report, a case, a transparency report.
# Training uses experiment=fast_cues (ORB logo, no OCR) so the demo fits 10 minutes on 2 cores;
# DEMO_TRAIN_OVERRIDES="" trains with every cue.
# Usage: scripts/demo.sh [DEMO_DIR] [WORKSPACE]   (defaults: data/demo data/demo-workspace)
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${1:-data/demo}
WORKSPACE=${2:-data/demo-workspace}
BS=${BRANDSENTRY:-.venv/bin/brandsentry}
WS="workspace=$WORKSPACE"
started=$(date +%s)

step() { printf '\n==== [%ss] %s\n' "$(($(date +%s) - started))" "$*"; }

step "1. synthetic brand world in $DEMO_DIR (kept between demos; delete it to regenerate)"
[ -f "$DEMO_DIR/listings_day1.csv" ] || $BS synth world out="$DEMO_DIR"
[ -f "$DEMO_DIR/listings_day2.csv" ] || $BS synth world out="$DEMO_DIR" day=2

step "2. fresh workspace $WORKSPACE: references, wordmarks, authorised sellers"
rm -rf "$WORKSPACE"
$BS refs import "$DEMO_DIR/references.csv" $WS | tail -n 1
$BS brands import "$DEMO_DIR/brands.json" $WS | tail -n 1
$BS sellers import "$DEMO_DIR/authorized_sellers.csv" $WS

step "3. FAISS index of the references (Lite0 embeddings)"
$BS index build $WS

step "4. train on day 1's labelled listings (MLflow experiment 'training'; the first version becomes champion)"
$BS train listings="$DEMO_DIR/listings_day1.csv" $WS ${DEMO_TRAIN_OVERRIDES-experiment=fast_cues}

step "5. score day 1 and day 2 with models:/brandsentry@champion; each run logs itself to MLflow (experiment 'scoring')"
for day in 1 2; do
    $BS score listings="$DEMO_DIR/listings_day$day.csv" out="$WORKSPACE/runs/score/day$day" $WS
done

step "6. a (simulated) reviewer answers day 2's flag/review queue; verdicts go into the catalog"
$BS feedback simulate "$WORKSPACE/runs/score/day2" "$DEMO_DIR/listings_day2.csv" --top 150 $WS
$BS feedback import "$WORKSPACE/runs/score/day2/_verdicts.csv" $WS

brand=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["brands"][0]["name"])' "$DEMO_DIR/brands.json")
step "7. a (simulated) representative of $brand answers its portal inbox through the JSON API"
token=$($BS tokens create --brand "$brand" --name demo-representative $WS | tail -n 1)
port=${DEMO_PORTAL_PORT:-8765}
$BS serve $WS portal.port="$port" > "$WORKSPACE/portal.log" 2>&1 &
portal=$!
trap 'kill $portal 2>/dev/null || true' EXIT
.venv/bin/python scripts/simulate_brand.py "http://127.0.0.1:$port" "$token" "$DEMO_DIR/listings_day2.csv" --answers 30
kill $portal && wait $portal 2>/dev/null || true
$BS feedback agreement $WS

step "8. retrain with the reviewer's and the brand's verdicts (promoted only if it beats the champion on the same validation set)"
$BS train listings="$DEMO_DIR/listings_day1.csv" data.include_feedback=true $WS ${DEMO_TRAIN_OVERRIDES-experiment=fast_cues}
$BS review models $WS

step "9. summary against ground truth"
$BS review summary "$WORKSPACE/runs/score/day1" "$WORKSPACE/runs/score/day2" $WS

step "10. the brand side: sellers across both days (also in the admin portal), $brand's evidence case, this month's transparency report"
$BS sellers report $WS
$BS case export --brand "$brand" "$WORKSPACE/cases/$brand.zip" $WS
$BS case verify "$WORKSPACE/cases/$brand.zip"
$BS report --period "$(date -u +%Y-%m)" $WS

step "done in $(($(date +%s) - started)) s. Open the MLflow UI with:"
echo "    make ui WORKSPACE=$WORKSPACE      # then http://127.0.0.1:5000"
