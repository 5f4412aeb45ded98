#!/usr/bin/env bash
# The quality protocol (protocol.yaml) with the code of two commits, side by side on this machine, one thread
# each, so both see the same load; writes OUT/{before,after}/record.json. No judge: this measures wall time.
#   bash benchmarks/speed/protocol.sh BEFORE_COMMIT AFTER_COMMIT OUT [--set data.max_eval_examples=100 ...]
# Run from the repository root.
set -euo pipefail
before=$1 after=$2 out=$3
shift 3
root=$(pwd)
for side in before after; do
  commit=${!side}
  tree=$(mktemp -d)/tree
  git worktree add -f --detach "$tree" "$commit" >/dev/null
  mkdir -p "$out"
  (start=$(date +%s.%N)
   OMP_NUM_THREADS=1 PYTHONPATH="$tree/src" python -m ctrldial run --config benchmarks/speed/protocol.yaml \
       --out "$out/$side" --overwrite "$@" > "$out/$side.log" 2>&1
   python -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)" > "$out/$side.wall"
   git worktree remove --force "$tree") &
done
wait
for side in before after; do
  python - "$out/$side/record.json" "$side" "$(cat "$out/$side.wall")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["cost"]
print(f"{sys.argv[2]}: commit {r['git']['commit'][:7]}  train {c['train_seconds']:.0f} s  generate {c['generate_seconds']:.0f} s  "
      f"wall {float(sys.argv[3]):.0f} s  packed {r['train'].get('packed', False)}  mixed precision {c['mixed_precision']}")
PY
done
