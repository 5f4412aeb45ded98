#!/bin/bash
# The definitive CPU comparison (issue "A comparison you can trust"): every method at its tuned learning rate,
# 3 seeds, unguided and with null-label guidance (γ = 3), the same 100 test contexts × 4 acts, two judges.
#
#   DATA=../shared/data/dailydialog JUDGE=/path/judge-gen2 JUDGE2=/path/ngram-gen2 WORK=/tmp/definitive \
#       bash benchmarks/definitive/run.sh QUEUE     # QUEUE = a … e: one worker per queue, one thread each, the
#                                                   # queues' methods disjoint (on the 2-core CPU: 4 at a time)
#   python benchmarks/definitive/collect.py $WORK  # after both queues: records → results/, report, tables
#
# Per method: `ctrldial tune` (3 trials of train.lr, log-uniform around the default, objective: guided control on
# 40 validation contexts), then `ctrldial run` from best.yaml for train.seed 0, 1, 2 on 100 test contexts
# (guided: the run's own record), then `ctrldial eval --record` on the same contexts with guidance_scale=1
# (unguided, same trained weights), then `ctrldial rescore --as ngram` with the second judge.
set -euo pipefail
: "${DATA:?}" "${JUDGE:?}" "${JUDGE2:?}" "${WORK:=/tmp/definitive}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
B=benchmarks/definitive
S="--set data.path=$DATA --set classifier.path=$JUDGE"
FINAL="--set data.max_eval_examples=100 --set eval.generation_perplexity=true"
declare -A SPACE=(
  [lora]="loguniform(2e-4,5e-3)" [adalora]="loguniform(5e-4,2e-2)" [ia3]="loguniform(3e-3,1e-1)"
  [full]="loguniform(1e-5,3e-4)" [prefix]="loguniform(1e-3,5e-2)" [prompt]="loguniform(3e-3,1e-1)"
  [p_tuning]="loguniform(1e-3,5e-2)")
case "${1:?queue a, b, c, d, e or f}" in
  a) METHODS="lora full zero_shot" ;;
  b) METHODS="ia3 prompt" ;;
  c) METHODS="adalora" ;;
  d) METHODS="prefix" ;;
  e) METHODS="p_tuning" ;;
  f) METHODS="zero_shot" ;;   # started while a still ran full: a then finds it done
esac

final() {  # method config_file extra...
  local m=$1 cfg=$2; shift 2
  for seed in 0 1 2; do
    local run=$WORK/runs/$m/seed$seed
    [ -f $run/record.json ] || ctrldial run --config $cfg $S $FINAL --set train.seed=$seed "$@" --out $run
    python $B/contexts.py $run > $run/contexts.jsonl
    local ug=$WORK/runs/$m-unguided/seed$seed
    [ -f $ug/record.json ] || ctrldial eval $run --contexts $run/contexts.jsonl --out $ug --record --set generate.guidance_scale=1
    if [ "$m" = zero_shot ]; then break; fi   # nothing trains: one seed is every seed
  done
}

for m in $METHODS; do
  if [ $m = zero_shot ]; then
    final zero_shot $B/base.yaml --set method.name=zero_shot --set data.template=chat
    continue
  fi
  ctrldial tune --config $B/base.yaml $S --set method.name=$m --out $WORK/tune/$m --trials 3 \
      --space "train.lr=${SPACE[$m]}" --objective valid_control_accuracy --seed 0
  final $m $WORK/tune/$m/best.yaml
done
