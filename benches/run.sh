#!/usr/bin/env bash
# One command for the ingest benchmark: builds release binaries, generates a
# corpus, then for each round measures, back to back, the ceilings (serde_json
# alone; raw tantivy with one commit; raw tantivy with a commit every ~second
# of its own throughput) and Tripline end to end. The machine is shared and
# noisy, so the rounds alternate and the report gives each ratio per round
# and its median, and the CPU seconds each side spent on the same events
# (raw tantivy until its commit returns, the daemon until searchable).
#
#   bash benches/run.sh [EVENTS] [ROUNDS]        (default 3000000 3, ~15 min)
#
# BENCH_BIN=DIR uses the binaries in DIR instead of building (to compare two
# builds on the same corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-3000000}
rounds=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "${BENCH_BIN:-}" ]]; then
  bin=$BENCH_BIN
else
  cargo build --release -q -p tripline -p tripline-bench
  bin=target/release
fi
$bin/tripline-gen --events "$events" --out "$work/corpus.ndjson"
$bin/tripline-gen --raw --events "$events" --out "$work/corpus.syslog"
# A commit every ~second at the ceiling's own pace: what Tripline's default
# commit interval asks of tantivy.
for r in $(seq 1 "$rounds"); do
  echo "== round $r: raw tantivy, one commit"
  $bin/tripline-ceiling --input "$work/corpus.ndjson" | tee "$work/ceiling-$r.json"
  every=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["raw_tantivy"]["events_per_s"]))' "$work/ceiling-$r.json")
  echo "== round $r: raw tantivy, a commit every $every documents"
  $bin/tripline-ceiling --input "$work/corpus.ndjson" --commit-every "$every" | tee "$work/ceiling-commits-$r.json"
  echo "== round $r: tripline (HTTP, gzip, WAL fsync, index, commit every 1 s)"
  $bin/tripline-load --spawn $bin/tripline --input "$work/corpus.ndjson" --connections 4 --batch 1000 | tee "$work/load-$r.json"
  echo "== round $r: tripline, the same number of sshd syslog lines over TCP (4 connections)"
  $bin/tripline-syslog-load --spawn $bin/tripline --input "$work/corpus.syslog" --connections 4 | tee "$work/syslog-$r.json"
  echo "== round $r: tripline, those syslog lines over HTTP (?format=syslog)"
  $bin/tripline-load --spawn $bin/tripline --input "$work/corpus.syslog" --format syslog --connections 4 --batch 1000 | tee "$work/syslog-http-$r.json"
done
python3 - "$work" "$rounds" <<'PY'
import json, sys, os, statistics
w, rounds = sys.argv[1], int(sys.argv[2])
rows = []
for r in range(1, rounds + 1):
    c = json.load(open(os.path.join(w, f"ceiling-{r}.json")))
    cc = json.load(open(os.path.join(w, f"ceiling-commits-{r}.json")))
    l = json.load(open(os.path.join(w, f"load-{r}.json")))
    rows.append({
        "serde": c["serde_json"]["events_per_s"],
        "tantivy": c["raw_tantivy"]["events_per_s"],
        "tantivy_merged": c["raw_tantivy"]["events_per_s_merged"],
        "tantivy_commits": cc["raw_tantivy"]["events_per_s"],
        "acked": l["acked"]["events_per_s"],
        "searchable": l["searchable"]["events_per_s"],
        "p99": l["ack_latency_ms"]["p99"],
        "lag": l["ack_to_searchable_ms"],
        "rss": l.get("daemon_peak_rss_mb"),
        "disk": l.get("index_fraction_of_raw"),
        "cpu_tantivy": c["raw_tantivy"]["cpu_seconds"],
        "cpu_tripline": l.get("daemon_cpu_seconds") or float("nan"),
        "syslog_tcp": json.load(open(os.path.join(w, f"syslog-{r}.json")))["searchable"]["events_per_s"],
        "syslog_http": json.load(open(os.path.join(w, f"syslog-http-{r}.json")))["searchable"]["events_per_s"],
    })
print(f"{'round':>5} {'serde_json':>10} {'tantivy':>9} {'merged':>9} {'~1/s':>9} {'acked':>9} {'searchable':>10} {'ratio':>6} {'vs ~1/s':>7} {'cpu s':>11} {'cpu ratio':>9}")
for i, x in enumerate(rows, 1):
    x["ratio"] = x["searchable"] / x["tantivy"]
    x["ratio_commits"] = x["searchable"] / x["tantivy_commits"]
    x["ratio_acked"] = x["acked"] / x["tantivy"]
    x["cpu_ratio"] = x["cpu_tantivy"] / x["cpu_tripline"]
    print(f"{i:>5} {x['serde']:>10.0f} {x['tantivy']:>9.0f} {x['tantivy_merged']:>9.0f} {x['tantivy_commits']:>9.0f} "
          f"{x['acked']:>9.0f} {x['searchable']:>10.0f} {x['ratio']:>6.2f} {x['ratio_commits']:>7.2f} "
          f"{x['cpu_tantivy']:>5.1f}/{x['cpu_tripline']:<5.1f} {x['cpu_ratio']:>9.2f}")
med = lambda k: statistics.median(x[k] for x in rows)
print(f"median tripline searchable / raw tantivy (one commit):    {med('ratio'):.2f}")
print(f"median tripline searchable / raw tantivy (commits ~1/s):  {med('ratio_commits'):.2f}")
# The WAL-to-index queue is bounded, so acks cannot run ahead of indexing:
# over a long stream events become searchable at the ack rate, one commit
# interval behind. The searchable figure above also pays one final wait.
print(f"median tripline acked (durable) / raw tantivy (one commit): {med('ratio_acked'):.2f}")
print(f"median CPU seconds raw tantivy / tripline (same events):  {med('cpu_ratio'):.2f}")
for x in rows:
    x["syslog_ratio"] = x["syslog_tcp"] / x["searchable"]
    x["syslog_vs_http_syslog"] = x["syslog_tcp"] / x["syslog_http"]
print("syslog over TCP, searchable events/s per round: " + ", ".join(f"{x['syslog_tcp']:.0f}" for x in rows))
print(f"median syslog over TCP / HTTP NDJSON (searchable events/s): {med('syslog_ratio'):.2f}   (target >= 0.8)")
print(f"median syslog over TCP / the same lines over HTTP:           {med('syslog_vs_http_syslog'):.2f}")
print(f"median tripline searchable events/s: {med('searchable'):.0f}; ack p99 {med('p99'):.0f} ms; "
      f"ack-to-searchable {med('lag'):.0f} ms; peak RSS {med('rss')} MiB; index/raw {med('disk')}")
PY
