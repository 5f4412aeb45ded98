#!/bin/bash
# The emotion judges, validated on generated text (issue 14's recipe applied to emotion; results/emotion-judges/).
#
#   DATA=../shared/data/dailydialog WORK=/tmp/definitive bash benchmarks/definitive/emotion_judge.sh
#
# Hand labels (blind, EMOTION_GUIDELINE.md): labels-emotion.jsonl (100, the held-out part: nothing trains on it or
# is chosen by it) and labels-emotion-dev.jsonl (200 more from the same emotion runs, `ctrldial judge draw
# WORK/emotion/runs --out emotion-draw-dev --random 100 --per-verdict 20 --attribute emotion --prefix f --seed 1
# --exclude emotion-draw/key.jsonl`, then `ctrldial judge join`). Choosing, on the development labels only:
#   1. the class-weight power (1 = inverse frequency, as judge-emo; 0.5; 0.25; no weights) of the n-gram judge;
#   2. how often the development labels repeat in training (10, 30, 100, 300), by 2-fold cross-validation on them.
# The chosen recipe then trains on all 200 development labels: ngram-emo-gen (the primary emotion judge, better on
# the development labels) and minilm-emo-gen (MiniLM, the second judge: another architecture and tokenizer).
# Each is checked once on the held-out labels; that agreement.json in the judge's folder is what the human-
# corrected control reads.
set -euo pipefail
: "${DATA:?}" "${WORK:=/tmp/definitive}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
B=benchmarks/definitive
J=$WORK/emotion/judges
R=$B/results/emotion-judges
DEV=$B/labels-emotion-dev.jsonl
HELD=$B/labels-emotion.jsonl
E="--set data.path=$DATA --set data.attribute=emotion --set classifier.context=previous"
NG="$E --set classifier.model=ngram"
mkdir -p $J/cv $R
train() { [ -f $1/ctrldial_classifier.json ] || ctrldial classifier train --out "$@" > $1.log 2>&1; }
agree() { ctrldial judge agreement $1 --classifier $2 --out $3 > /dev/null; }
# 1. class weights (no hand labels in training)
for pw in 1.0 0.5 0.25; do train $J/ngram-p$pw $NG --set classifier.class_weights=true --set classifier.class_weight_power=$pw; done
train $J/ngram-none $NG
for j in ngram-p1.0 ngram-p0.5 ngram-p0.25 ngram-none; do agree $DEV $J/$j $J/$j/agree-dev; done
agree $DEV $WORK/emotion/judge-emo $J/judge-emo-agree-dev
train $J/minilm-p0.5 $E --set classifier.class_weights=true --set classifier.class_weight_power=0.5 \
    --set classifier.max_length=96 --set classifier.max_steps=1200 --set classifier.eval_every=600
agree $DEV $J/minilm-p0.5 $J/minilm-p0.5/agree-dev
# 2. development labels in training, 2-fold cross-validation (folds: alternate lines of the development file)
python - "$DEV" "$J/cv" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
for f in (0, 1):
    open(f"{sys.argv[2]}/fold{f}.jsonl", "w", encoding="utf-8").write("".join(l + "\n" for i, l in enumerate(lines) if i % 2 == f))
PY
for rep in 10 30 100 300; do
  for f in 0 1; do
    train $J/cv/ngram-rep$rep-train$f $NG --set classifier.class_weights=true --set classifier.class_weight_power=0.5 \
        --set classifier.extra_train=$J/cv/fold$f.jsonl --set classifier.extra_repeats=$rep
    agree $J/cv/fold$((1 - f)).jsonl $J/cv/ngram-rep$rep-train$f $J/cv/ngram-rep$rep-train$f/agree-$((1 - f))
  done
done
# 3. the chosen recipe on all development labels; the held-out check
GEN="--set classifier.class_weights=true --set classifier.class_weight_power=0.5 --set classifier.extra_train=$DEV --set classifier.extra_repeats=100"
train $J/ngram-emo-gen $NG $GEN
train $J/minilm-emo-gen $E $GEN --set classifier.max_length=96 --set classifier.max_steps=1200 --set classifier.eval_every=600
for j in ngram-emo-gen minilm-emo-gen; do agree $HELD $J/$j $J/$j; agree $DEV $J/$j $J/$j/agree-dev; done
agree $HELD $WORK/emotion/judge-emo $J/judge-emo-agree-heldout
python $B/emotion_judges.py $J --out $R
