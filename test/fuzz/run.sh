#!/usr/bin/env bash
# run.sh SECONDS full|smoke DIR TARGET...: run each libFuzzer binary DIR/TARGET for SECONDS and print
# one summary line per target:
#   fuzz_ops: 123456 runs in 60 s (2057/s), ok
#   fuzz_open: 8123 runs in 3 s (2707/s), crash: build/fuzz/artifacts/fuzz_open/crash-...
# With "smoke", each target's last line is also "NAME: 1 passed, 0 failed" (or "0 passed, 1 failed"),
# the form CI sums. A failing target prints its sanitizer report (from DIR/TARGET.log) before its
# summary. Exit status: 0 when every target ran clean, 1 otherwise.
#
# Each target fuzzes DIR/corpus/TARGET: a scratch corpus seeded (without overwriting) from the committed
# test/fuzz/corpus/TARGET, which libFuzzer therefore never writes.
set -uo pipefail
seconds=$1 kind=$2 dir=$3
shift 3
seeds=$(dirname "$0")/corpus
status_all=0

# The report a failure left in the log: from the first error line on, at most 80 lines.
report() {
  awk '/ERROR: |expectation failed|runtime error|ALARM: |^==[0-9]+==/ { on = 1 }
       on && n++ < 80 { print "  " $0 }' "$1"
}

summarise() { # NAME LOG STATUS ELAPSED
  local name=$1 log=$2 status=$3 elapsed=$4 runs artifact result
  runs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log" | tail -1)
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -1)
  runs=${runs:-0}
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    report "$log"
    result="crash: ${artifact:-none written, exit $status, see $log}"
  fi
  echo "$name: $runs runs in $elapsed s ($((runs / (elapsed > 0 ? elapsed : 1)))/s), $result"
}

for name in "$@"; do
  corpus=$dir/corpus/$name artifacts=$dir/artifacts/$name log=$dir/$name.log
  mkdir -p "$corpus" "$artifacts"
  cp -n "$seeds/$name"/* "$corpus"/
  # -timeout: no single input may take 10 s (kv_open waits a second at most); a hang is a failure.
  start=$(date +%s)
  "$dir/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -use_value_profile=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1
  status=$?
  summarise "$name" "$log" "$status" $(($(date +%s) - start))
  [ "$status" -eq 0 ] || status_all=1
  if [ "$kind" = smoke ]; then
    if [ "$status" -eq 0 ]; then echo "$name: 1 passed, 0 failed"; else echo "$name: 0 passed, 1 failed"; fi
  fi
done
exit "$status_all"
