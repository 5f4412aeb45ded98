#!/bin/bash
# fixed small runs on `sample`, for the before/after comparison of the refactor (issue 13)
set -e
export PYTHONPATH=${SRC:-/work/before/base/src}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
OUT=${1:-/work/before/runs}
[ -d /work/before/clf ] || python -m ctrldial classifier train --out /work/before/clf --set classifier.max_steps=30 --set classifier.eval_every=15
common="--set data.max_eval_examples=6 --set train.tracker=none --set classifier.path=/work/before/clf --set train.eval_every=2"
python -m ctrldial run --out $OUT/lora --set method.name=lora --set train.max_steps=4 $common &
python -m ctrldial run --out $OUT/prefix --set method.name=prefix --set train.max_steps=4 $common
wait
python -m ctrldial run --out $OUT/full --set method.name=full --set train.max_steps=3 $common &
python -m ctrldial run --out $OUT/tiny-special --set model.name=tiny-gpt2 --set method.name=full --set data.label_style=special --set train.max_steps=3 $common
wait
