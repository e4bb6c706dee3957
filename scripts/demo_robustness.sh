#!/usr/bin/env bash
# The demo's robustness run, after `make demo`: two hardening options (the gate recalibrated for randomised check
# positions, `probe --config configs/demo/probe_jitter.yaml`; adversarial calibration, `harden --config
# configs/harden/demo.yaml`), then every defence against attacks that ignore it and
# attacks that know it, over budgets (`robustness --config configs/robustness/demo.yaml`): runs/demo/robustness/
# robustness.md, .json, .png.
#   scripts/demo_robustness.sh [WORK_DIR=runs/demo]
# Extra arguments per step (the reduced demo test shrinks the run with them): DEMO_PROBE_ARGS, DEMO_HARDEN_ARGS,
# DEMO_ROBUSTNESS_ARGS.
set -euo pipefail
set -f  # the extra arguments may hold JSON lists: no globbing
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
PY=${PYTHON:-python}
C="$WORK/configs/robustness"
mkdir -p "$C"
for f in configs/demo/probe_jitter.yaml configs/demo/probe_gate.yaml configs/demo/eval.yaml \
  configs/harden/demo.yaml configs/robustness/demo.yaml; do
  sed -e "s#configs/demo/eval.yaml#$C/demo_eval.yaml#" -e "s#configs/demo/probe_gate.yaml#$C/demo_probe_gate.yaml#" \
    -e "s#runs/demo\(/\|\$\)#$WORK\1#g" "$f" >"$C/$(basename "$(dirname "$f")")_$(basename "$f")"
done
start=$(date +%s)
echo "== 1. the gate recalibrated for randomised check positions"
$PY -m reminder_lightning probe --config "$C/demo_probe_jitter.yaml" ${DEMO_PROBE_ARGS:-}
echo "== [$(($(date +%s) - start)) s] 2. adversarial calibration: rounds of adaptive PGD against the gate and a refit"
$PY -m reminder_lightning harden --config "$C/harden_demo.yaml" ${DEMO_HARDEN_ARGS:-}
echo "== [$(($(date +%s) - start)) s] 3. every defence against every attack and budget"
$PY -m reminder_lightning robustness --config "$C/robustness_demo.yaml" ${DEMO_ROBUSTNESS_ARGS:-}
echo "Robustness run finished in $(($(date +%s) - start)) s: $WORK/robustness/robustness.md"
