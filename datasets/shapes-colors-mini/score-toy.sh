#!/usr/bin/env bash
# Explanation methods against ground truth on the trained toy model: regenerates a held-out set of
# the synthetic colour world (a seed used neither for training, 1001, nor for the bundled set, 17),
# then runs score-methods (pointing game, mass in the object box, deletion AUC, ms/example of every
# method, with the chance rate) and findings (answer-carrying layers and heads, logit lens at the
# object's patches, whether the top head attends to the object) over it.
#
# usage: datasets/shapes-colors-mini/score-toy.sh [OUT]        (default: out/score-toy)
#   SEED=3003 COUNT=256 MODEL=datasets/shapes-colors-mini/toy-llava   override the defaults
# writes: OUT/heldout/ (manifest + images), OUT/methods/summary.md (+ Parquet, PNG),
#         OUT/findings/findings.md (+ findings.json, PNG), OUT/timings.txt
# Re-run it after retraining the checkpoint to re-measure the README's numbers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(realpath -m "${1:-$root/out/score-toy}")"
seed="${SEED:-3003}"
count="${COUNT:-256}"
model="$(realpath -m "${MODEL:-$root/datasets/shapes-colors-mini/toy-llava}")"
case "$seed" in
  1001|17) echo "score-toy: seed $seed made the training set (1001) or the bundled mini set (17); choose another" >&2; exit 2 ;;
esac
cd "$root"
mkdir -p "$out"
: > "$out/timings.txt"
step() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "[score-toy] $name: $*" >&2
  "$@"
  echo "$name $((SECONDS - t0)) s" | tee -a "$out/timings.txt" >&2
}
start=$SECONDS
./llavamech --help > /dev/null   # build the CLI first, so no step's time includes the build
step dataset ./llavamech dataset synth-colors --count "$count" --tqa 0 --seed "$seed" --out "$out/heldout"
step score-methods ./llavamech score-methods --model "$model" --dataset "$out/heldout/manifest.jsonl" --out "$out/methods"
step findings ./llavamech findings --model "$model" --dataset "$out/heldout/manifest.jsonl" --out "$out/findings"
echo "total $((SECONDS - start)) s (seed $seed, $count VQA examples, $(nproc) cores)" | tee -a "$out/timings.txt" >&2
echo "[score-toy] $out/methods/summary.md and $out/findings/findings.md" >&2
