#!/usr/bin/env bash
# GPU check for a CUDA workstation (about 5 minutes): V-01, short AMP runs of both trainers
# with the local configs, scoring smoke, validation checklist, and the CWT / training /
# scoring throughput benchmarks on the GPU. Writes a short report to
# artifacts/gpu_check/report.md. Run from anywhere: paths resolve against the repo root.
#   bash scripts/gpu_check.sh            # uses .venv/bin/python when present
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=artifacts/gpu_check
mkdir -p "$OUT"
REPORT=$OUT/report.md
status=0

run() {  # run TITLE CMD... : log to $OUT/<n>.log, append a line to the report
  local title=$1; shift
  local log="$OUT/$(echo "$title" | tr -c 'A-Za-z0-9' '_').log"
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then r=PASS; else r=FAIL; status=1; fi
  echo "| $title | $r | $((SECONDS - start)) s | \`$*\` |" >>"$REPORT"
  tail -n 25 "$log" | sed 's/^/    /' >>"$OUT/details.md"
  echo "$r  $title ($((SECONDS - start)) s)"
}

{
  echo "# GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "| step | result | time | command |"
  echo "|---|---|---|---|"
} >"$REPORT"
: >"$OUT/details.md"

SHORT_P=(--set training.epochs=2 --set training.max_steps_per_epoch=50)
SHORT_S=(--set training.epochs=2 --set training.max_steps_per_epoch=30)
run "V-01 environment" "$PY" -m pipelines.check_env
run "demo data" "$PY" -m sensor_data.demo
run "train patchtst (local, AMP)" "$PY" -m trainers.train_patchtst_ssl \
  --config configs/patchtst_ssl_local.yaml "${SHORT_P[@]}"
run "train swinmae (local, AMP)" "$PY" -m trainers.train_swinmae_ssl \
  --config configs/swinmae_ssl_local.yaml "${SHORT_S[@]}"
run "scoring smoke patchtst" "$PY" -m inference.run_scoring_example --stream patchtst \
  --checkpoint checkpoints/patchtst_ssl.pt --config configs/patchtst_ssl_local.yaml
run "scoring smoke swinmae" "$PY" -m inference.run_scoring_example --stream swinmae \
  --checkpoint checkpoints/swinmae_ssl.pt --config configs/swinmae_ssl_local.yaml
run "bundle" "$PY" -m pipelines.make_bundle --repo-root . \
  --patch-config configs/patchtst_ssl_local.yaml --swin-config configs/swinmae_ssl_local.yaml
run "validation checklist" "$PY" -m pipelines.validate_training_outputs --repo-root . \
  --patch-config configs/patchtst_ssl_local.yaml --swin-config configs/swinmae_ssl_local.yaml \
  --json-out "$OUT/checklist.json"
run "bench CWT (cuda)" "$PY" -m benchmarks.bench_cwt --device cuda
run "bench PatchTST vs HF (cuda)" "$PY" -m benchmarks.bench_patchtst_vs_hf --device cuda
run "bench scoring (cuda)" "$PY" -m benchmarks.bench_scoring --device cuda

echo
echo "report: $REPORT (logs in $OUT/)"
exit $status
