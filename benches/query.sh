#!/usr/bin/env bash
# One command for the query benchmark: builds release binaries, installs
# ripgrep from crates.io when it is missing, generates a corpus over 24 hours
# with a rare needle IP, loads it into a daemon on its defaults, lets merges
# settle, then times each query (p50/p99) and ripgrep over the raw NDJSON.
#
#   bash benches/query.sh [EVENTS] [RUNS]        (default 10000000 20)
#
# The corpus (~470 bytes an event) and the index are written under
# BENCH_DIR (default: a temporary directory, removed at exit); 10 million
# events need ~4.7 GB for the corpus and ~2.4 GB for the index.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000000}
runs=${2:-20}
work=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
cleanup() {
  if [[ -n "${daemon:-}" ]]; then kill "$daemon" 2>/dev/null || true; fi
  if [[ -z "${BENCH_DIR:-}" ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
command -v rg >/dev/null || cargo install --locked ripgrep
cargo build --release -q -p tripline -p tripline-bench
bin=$PWD/target/release
needle_every=$(( events / 10 > 0 ? events / 10 : 1 ))
[[ -s "$work/corpus.ndjson" ]] ||
  $bin/tripline-gen --events "$events" --needle-every "$needle_every" --out "$work/corpus.ndjson"
rm -rf "$work/data"
token=query-bench-admin-0123456789
TRIPLINE_ADMIN_TOKEN=$token TRIPLINE_LOG=warn \
  $bin/tripline serve --listen 127.0.0.1:0 --syslog-listen off --data-dir "$work/data" > "$work/daemon.out" &
daemon=$!
until grep -q "tripline ready" "$work/daemon.out"; do sleep 0.2; done
url=$(sed -n 's/^tripline listening on //p' "$work/daemon.out")
echo "== load ($events events)"
$bin/tripline-load --server "$url" --token "$token" --input "$work/corpus.ndjson" | tee "$work/load.json"
echo "== settle: merges run for 60 s"
sleep 60
echo "== index: $(du -sb "$work/data/index" | cut -f1) bytes for $(stat -c %s "$work/corpus.ndjson") raw bytes"
echo "== queries ($runs runs each)"
$bin/tripline-query-bench --server "$url" --token "$token" --input "$work/corpus.ndjson" --runs "$runs" | tee "$work/query.json"
kill -TERM "$daemon"
wait "$daemon" || true
daemon=
