#!/usr/bin/env bash
# One command for the ingest benchmark: builds release binaries, generates a
# corpus, measures the ceilings (serde_json alone, raw tantivy once and with
# a commit every ~second) and Tripline end to end, in the same run.
#
#   bash benches/run.sh [EVENTS]        (default 400000)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-400000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p tripline -p tripline-bench
bin=target/release
$bin/tripline-gen --events "$events" --out "$work/corpus.ndjson"
echo "== ceiling (one commit)"
$bin/tripline-ceiling --input "$work/corpus.ndjson" | tee "$work/ceiling.json"
echo "== ceiling (commit every 25000 documents)"
$bin/tripline-ceiling --input "$work/corpus.ndjson" --commit-every 25000 | tee "$work/ceiling-commits.json"
echo "== tripline (HTTP, gzip, WAL fsync, index, commit every 1 s)"
$bin/tripline-load --spawn $bin/tripline --input "$work/corpus.ndjson" --connections 4 --batch 1000 | tee "$work/load.json"
python3 - "$work" <<'PY'
import json, sys, os
w = sys.argv[1]
c = json.load(open(os.path.join(w, "ceiling.json")))
cc = json.load(open(os.path.join(w, "ceiling-commits.json")))
l = json.load(open(os.path.join(w, "load.json")))
t = l["searchable"]["events_per_s"]
print(f"tripline / raw tantivy (one commit):   {t / c['raw_tantivy']['events_per_s']:.2f}")
print(f"tripline / raw tantivy (commits ~1/s): {t / cc['raw_tantivy']['events_per_s']:.2f}")
PY
