#!/usr/bin/env bash
# Real-corpus control benchmark at a CPU budget (SmolLM2-135M, DailyDialog, MiniLM act judge).
# Usage: benchmarks/quality/run.sh OUT_DIR CLASSIFIER_DIR [DATA_DIR]
# Budget per trained method: 1,000 act-balanced training examples, 60 steps at batch 8, label before the
# response; 40 deduplicated test contexts × 4 requested acts = 160 responses, greedy, <= 32 new tokens.
set -euo pipefail
out=${1:?out dir}; clf=${2:?classifier dir}; data=${3:-../shared/data/dailydialog}
common=(--set model.name=smollm2-135m --set data.path=$data --set classifier.path=$clf
        --set data.max_train_examples=1000 --set train.max_steps=60 --set train.eval_every=20
        --set data.max_eval_examples=40 --set data.max_valid_examples=64 --set train.tracker=none)
run() { name=$1; shift; /usr/bin/time -f "$name wall %e s" ctrldial run --out "$out/$name" "${common[@]}" "$@" || true; }
run zero_shot-chat --set method.name=zero_shot --set data.template=chat
run lora           --set method.name=lora
run lora-chat      --set method.name=lora --set data.template=chat
run prompt         --set method.name=prompt
run prefix         --set method.name=prefix
ctrldial report "$out"
