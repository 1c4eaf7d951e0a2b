#!/bin/sh
# The nightly reanalysis (CronJob llavamech-nightly): reanalyses NIGHTLY_DATASET with NIGHTLY_MODEL into a dated run
# under NIGHTLY_OUT_ROOT, then diffs it against the previous successful run. Exits non-zero when either step fails,
# so the Job (and the CronJob's last status) shows the failure. State (successful runs, diffs) lives in
# NIGHTLY_STATE (a volume of the CronJob).
set -eu
: "${NIGHTLY_MODEL:?NIGHTLY_MODEL is not set}"
: "${NIGHTLY_DATASET:?NIGHTLY_DATASET is not set}"
: "${NIGHTLY_OUT_ROOT:?NIGHTLY_OUT_ROOT is not set}"
state="${NIGHTLY_STATE:-/var/lib/llavamech-nightly}"
day="$(date -u +%Y-%m-%d)"
run="${NIGHTLY_OUT_ROOT%/}/$day"
history="$state/successful-runs"
mkdir -p "$state/diffs"
touch "$history"

log() { printf '{"timestamp":"%s","category":"nightly","message":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# --device only where the reanalyze command takes it (it runs the analysis in process, like run).
set -- --model "$NIGHTLY_MODEL" --dataset "$NIGHTLY_DATASET" --out "$run"
if [ -n "${NIGHTLY_DEVICE:-}" ] && llavamech reanalyze --help 2>&1 | grep -q -e '--device'; then
  set -- "$@" --device "$NIGHTLY_DEVICE"
fi
log "reanalyze: $NIGHTLY_MODEL over $NIGHTLY_DATASET -> $run"
if ! llavamech reanalyze "$@"; then
  log "reanalyze failed: $run"
  exit 1
fi

# The previous successful run other than tonight's (a rerun on the same day diffs against the night before).
previous="$(grep -v -x -F -e "$run" "$history" | tail -n 1 || true)"
if [ -n "$previous" ]; then
  out="$state/diffs/$day"
  log "diff: $previous vs $run -> $out"
  if ! llavamech diff --a "$previous" --b "$run" --out "$out"; then
    log "diff failed: $previous vs $run"
    exit 1
  fi
else
  log "no previous successful run: nothing to diff against yet"
fi
grep -q -x -F -e "$run" "$history" || printf '%s\n' "$run" >> "$history"
log "done: $run"
