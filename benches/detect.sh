#!/usr/bin/env bash
# One command for the detection benchmark: the same corpus ingested by the
# daemon with no rules, with 100 SigmaHQ rules, and with all of them (each
# set plus one rule that matches the corpus's failed logins, so alerts are
# made), rounds alternating. Reports, per set: events acknowledged per
# second, searchable per second, evaluated by detection per second (all
# events through every rule), and the delay from acknowledgement to alert
# (p50 and p99, upper bounds of the histogram's buckets). The closed-loop
# rounds send as fast as acknowledged, so when detection is slower than
# ingest the delay is its backlog; the last phase offers a steady rate
# below detection's (LATENCY_RATE, default 8000 events/s, 200,000 events)
# with 1 rule and with all rules, which is the delay an alert really has.
#
#   bash benches/detect.sh [EVENTS] [ROUNDS]     (default 1000000 2, ~15 min)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
rounds=${2:-2}
sigma=${SIGMA_DIR:-../shared/data/sigma}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p tripline -p tripline-bench
bin=target/release
$bin/tripline-gen --events "$events" --out "$work/corpus.ndjson"

bench_rule='title: Bench failed logins
id: 00000000-0000-0000-0000-00000000be01
level: medium
logsource: {product: bench}
suppression: {group_by: [source.ip], duration: 5m}
detection:
    sel:
        event.category: authentication
        event.outcome: failure
    condition: sel'
mkdir -p "$work/rules-0" "$work/rules-100" "$work/rules-all"
for set in 0 100 all; do printf '%s\n' "$bench_rule" > "$work/rules-$set/bench.yml"; done
find "$sigma" -name '*.yml' | sort > "$work/all.txt"
i=0
while read -r f; do
  i=$((i + 1))
  [[ $i -le 100 ]] && cp "$f" "$work/rules-100/r$i.yml"
  cp "$f" "$work/rules-all/r$i.yml"
done < "$work/all.txt"
for set in 0 100 all; do
  printf '[detect]\nrules_dir = "%s"\n' "$work/rules-$set" > "$work/$set.toml"
done
printf '' > "$work/none.toml"

for r in $(seq 1 "$rounds"); do
  for set in none 0 100 all; do
    echo "== round $r: rules $set"
    $bin/tripline-load --spawn $bin/tripline --config "$work/$set.toml" --input "$work/corpus.ndjson" \
      --connections 4 --batch 1000 | tee "$work/load-$set-$r.json"
  done
done
rate=${LATENCY_RATE:-8000}
for set in 0 all; do
  echo "== steady $rate events/s: rules $set"
  $bin/tripline-load --spawn $bin/tripline --config "$work/$set.toml" --events 200000 --seed 7 \
    --rate "$rate" --connections 4 --batch 100 | tee "$work/steady-$set.json"
done
python3 - "$work" "$rounds" <<'PY'
import json, sys, os, statistics
w, rounds = sys.argv[1], int(sys.argv[2])
sets = ["none", "0", "100", "all"]
names = {"none": "detection off", "0": "1 rule", "100": "101 rules", "all": "all rules + 1"}
rows = {s: [json.load(open(os.path.join(w, f"load-{s}-{r}.json"))) for r in range(1, rounds + 1)] for s in sets}
med = lambda s, f: statistics.median(f(x) for x in rows[s])
base = med("none", lambda x: x["acked"]["events_per_s"])
print(f"{'rules':>14} {'acked/s':>9} {'vs off':>6} {'searchable/s':>12} {'detected/s':>10} {'matches':>9} {'alerts':>6} {'delay p50':>9} {'p99':>7}")
for s in sets:
    acked = med(s, lambda x: x["acked"]["events_per_s"])
    searchable = med(s, lambda x: x["searchable"]["events_per_s"])
    d = rows[s][-1].get("detection") or {}
    detected = med(s, lambda x: (x.get("detection") or {}).get("events_per_s") or float("nan"))
    print(f"{names[s]:>14} {acked:>9.0f} {acked / base:>6.2f} {searchable:>12.0f} {detected:>10.0f} "
          f"{d.get('matches') or 0:>9.0f} {d.get('alerts_created') or 0:>6.0f} "
          f"{str(d.get('alert_delay_s_p50_at_most')):>9} {str(d.get('alert_delay_s_p99_at_most')):>7}")
for s in ["0", "all"]:
    x = json.load(open(os.path.join(w, f"steady-{s}.json")))
    d = x.get("detection") or {}
    print(f"steady {x['offered_rate']:.0f}/s, {names[s]}: acked {x['acked']['events_per_s']:.0f}/s, "
          f"ack p99 {x['ack_latency_ms']['p99']} ms, records with matches {d.get('records_with_matches')}, "
          f"alert delay p50 <= {d.get('alert_delay_s_p50_at_most')} s, p99 <= {d.get('alert_delay_s_p99_at_most')} s")
PY
