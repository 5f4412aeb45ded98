#!/bin/bash
# Emotion control at a smaller budget (issue "A comparison you can trust", item 4): LoRA and prompt tuning at the
# learning rates tuned for act control (benchmarks/definitive/run.sh: WORK/tune/<method>/best.yaml), the act
# budget otherwise (60 steps, label dropout 0.1), 3 seeds, 50 test contexts × 7 emotions, guided (null-label
# γ = 3, the run's record) and unguided (`ctrldial eval --record`, same weights, same contexts).
#
#   DATA=../shared/data/dailydialog WORK=/tmp/definitive bash benchmarks/definitive/emotion.sh
#
# The judge: MiniLM with the previous utterance, class-weighted loss (83% of utterances are "no emotion").
set -euo pipefail
: "${DATA:?}" "${WORK:=/tmp/definitive}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
B=benchmarks/definitive
EJ=$WORK/emotion/judge-emo
[ -f $EJ/ctrldial_classifier.json ] || ctrldial classifier train --out $EJ --set data.path=$DATA --set data.attribute=emotion \
    --set classifier.class_weights=true --set classifier.context=previous --set classifier.max_length=96 \
    --set classifier.max_steps=1200 --set classifier.eval_every=600
S="--set data.path=$DATA --set data.attribute=emotion --set classifier.path=$EJ --set data.max_eval_examples=50 --set eval.generation_perplexity=true"
for m in lora prompt; do
  while [ ! -f $WORK/tune/$m/best.yaml ]; do sleep 30; done   # the act study of run.sh chooses the learning rate
  for seed in 0 1 2; do
    run=$WORK/emotion/runs/$m/seed$seed
    [ -f $run/record.json ] && grep -q '"status": "ok"' $run/record.json || ctrldial run --config $WORK/tune/$m/best.yaml $S --set train.seed=$seed --out $run --overwrite
    python $B/contexts.py $run > $run/contexts.jsonl
    ug=$WORK/emotion/runs/$m-unguided/seed$seed
    [ -f $ug/record.json ] || ctrldial eval $run --contexts $run/contexts.jsonl --out $ug --record --set generate.guidance_scale=1
  done
done
