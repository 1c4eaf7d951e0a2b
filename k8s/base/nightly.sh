#!/bin/sh
# The nightly reanalysis (CronJob llavamech-nightly): `llavamech reanalyze` of NIGHTLY_DATASET with NIGHTLY_MODEL into
# the fixed root NIGHTLY_OUT_ROOT. The root holds one run per model version (<root>/fp-<fingerprint>, indexed in
# <root>/_runs/): a new model version is analysed in full, the same version again only resumes what is missing
# (nothing when its run is complete). When the root holds a completed run of another model version, reanalyze writes
# the diff of tonight's run against the latest such run to NIGHTLY_STATE/diffs/<date> (--diff-out). Exits non-zero
# when the reanalysis (or its diff) fails, so the Job (and the CronJob's last status) shows the failure. NIGHTLY_STATE
# is a volume of the CronJob.
set -eu
: "${NIGHTLY_MODEL:?NIGHTLY_MODEL is not set}"
: "${NIGHTLY_DATASET:?NIGHTLY_DATASET is not set}"
: "${NIGHTLY_OUT_ROOT:?NIGHTLY_OUT_ROOT is not set}"
state="${NIGHTLY_STATE:-/var/lib/llavamech-nightly}"
day="$(date -u +%Y-%m-%d)"
diffs="$state/diffs/$day"
mkdir -p "$state/diffs"

log() { printf '{"timestamp":"%s","category":"nightly","message":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

set -- --model "$NIGHTLY_MODEL" --dataset "$NIGHTLY_DATASET" --out "$NIGHTLY_OUT_ROOT" --diff-out "$diffs"
# --device only where the reanalyze command takes it (it runs the analysis in process, like run).
if [ -n "${NIGHTLY_DEVICE:-}" ] && llavamech reanalyze --help 2>&1 | grep -e '--device' >/dev/null; then
  set -- "$@" --device "$NIGHTLY_DEVICE"
fi
log "reanalyze: $NIGHTLY_MODEL over $NIGHTLY_DATASET into the root $NIGHTLY_OUT_ROOT (diff -> $diffs)"
if ! llavamech reanalyze "$@"; then
  log "reanalyze failed: $NIGHTLY_MODEL into $NIGHTLY_OUT_ROOT"
  exit 1
fi
if [ -f "$diffs/diff.json" ]; then
  log "diff against the previous model version: $diffs"
else
  log "no completed run of another model version in $NIGHTLY_OUT_ROOT yet: nothing to diff against"
fi
log "done: $NIGHTLY_OUT_ROOT"
