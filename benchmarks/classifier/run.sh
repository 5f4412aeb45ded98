#!/usr/bin/env bash
# The act-classifier benchmark: the 3,000-utterance smoke check, both full-train MiniLM classifiers
# (utterance only; previous utterance + utterance), test evaluation, the class-bias analysis and the
# results table, and the ensemble judge's three rounds. About 8 h on a 2-core CPU; see README.md.
#   DATA=/path/to/dailydialog OUT=/work bash benchmarks/classifier/run.sh
set -euo pipefail
DATA=${DATA:-/work/shared/data/dailydialog}
OUT=${OUT:-/work}
# one thread per run: on a shared 2-core machine a 2-thread step stalls whenever another job takes a core
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "$(dirname "$0")/../.."

ctrldial classifier train --out /tmp/clf3k --set data.path="$DATA" --set classifier.model=minilm-l6 \
  --set data.max_train_examples=3000 --set classifier.epochs=1
ctrldial classifier eval /tmp/clf3k --set data.path="$DATA"

# one epoch (act-utt, act-ctx) and two epochs (act-utt-2ep, act-ctx-2ep) over the whole train split
for ep in 1 2; do
  sfx=$([ $ep = 2 ] && echo -2ep || true)
  full=(--set data.path="$DATA" --set classifier.model=minilm-l6 --set classifier.lr=1e-4 --set classifier.epochs=$ep
        --set classifier.eval_every=500)
  ctrldial classifier train --out "$OUT/clf-act-utt$sfx" "${full[@]}" --set classifier.max_length=64 & utt=$!
  ctrldial classifier train --out "$OUT/clf-act-ctx$sfx" "${full[@]}" --set classifier.context=previous --set classifier.max_length=96 & ctx=$!
  wait $utt
  wait $ctx
  for v in utt ctx; do
    ctrldial classifier eval "$OUT/clf-act-$v$sfx" --set data.path="$DATA"
    # the whole official test split too (data.dedup=false keeps the 93 test dialogues that also occur in train)
    ctrldial classifier eval "$OUT/clf-act-$v$sfx" --out "$OUT/clf-act-$v$sfx/eval-full-split" --set data.path="$DATA" --set data.dedup=false
  done
done
# more context turns, and two more seeds of the one-turn context model (one epoch each, bf16 autocast)
full=(--set data.path="$DATA" --set classifier.model=minilm-l6 --set classifier.lr=1e-4 --set classifier.epochs=1
      --set classifier.eval_every=500 --set classifier.context=previous)
for k in 2 3; do ctrldial classifier train --out "$OUT/clf3/act-ctx$k" "${full[@]}" --set classifier.context_turns=$k --set classifier.max_length=128; done
for s in 1 2; do ctrldial classifier train --out "$OUT/clf3/act-ctx1-s$s" "${full[@]}" --set classifier.max_length=96 --set classifier.seed=$s; done
ctrldial classifier train --out "$OUT/clf3/act-ctx1-lr2e4" "${full[@]}" --set classifier.max_length=96 --set classifier.lr=2e-4  # later lr wins
# the ensemble judge: every subset of the seven classifiers ranked on validation; test reported beside
python benchmarks/classifier/select_ensemble.py ctx1="$OUT/clf-act-ctx" ctx1b="$OUT/clf-act-ctx-2ep" ctx1s1="$OUT/clf3/act-ctx1-s1" \
  ctx1s2="$OUT/clf3/act-ctx1-s2" ctx2="$OUT/clf3/act-ctx2" ctx3="$OUT/clf3/act-ctx3" utt2="$OUT/clf-act-utt-2ep" --data "$DATA" --cache "$OUT/clf3/ens-probs"
# the subset validation chose
ctrldial classifier ensemble --out "$OUT/clf3/judge-ens5" "$OUT/clf-act-ctx-2ep" "$OUT/clf3/act-ctx1-s1" "$OUT/clf3/act-ctx1-s2" \
  "$OUT/clf3/act-ctx3" "$OUT/clf-act-utt-2ep"
for m in judge-ens5 act-ctx1-s1 act-ctx1-s2 act-ctx2 act-ctx3 act-ctx1-lr2e4; do
  ctrldial classifier eval "$OUT/clf3/$m" --set data.path="$DATA"
  ctrldial classifier eval "$OUT/clf3/$m" --out "$OUT/clf3/$m/eval-full-split" --set data.path="$DATA" --set data.dedup=false
done

# round 3: label smoothing (seeds 3, 4), one more seed of the one-turn, three-turn and utterance-only models,
# then the same validation-only selection over all fourteen classifiers
for s in 3 4; do ctrldial classifier train --out "$OUT/clf4/act-ctx1-ls-s$s" "${full[@]}" --set classifier.max_length=96 \
  --set classifier.label_smoothing=0.1 --set classifier.seed=$s; done
ctrldial classifier train --out "$OUT/clf4/act-ctx1-s3" "${full[@]}" --set classifier.max_length=96 --set classifier.seed=3
ctrldial classifier train --out "$OUT/clf4/act-ctx3-s1" "${full[@]}" --set classifier.context_turns=3 --set classifier.max_length=128 --set classifier.seed=1
utt=(--set data.path="$DATA" --set classifier.model=minilm-l6 --set classifier.lr=1e-4 --set classifier.epochs=1 --set classifier.eval_every=500)
ctrldial classifier train --out "$OUT/clf4/act-utt-s1" "${utt[@]}" --set classifier.max_length=64 --set classifier.seed=1
python benchmarks/classifier/select_ensemble.py ctx1="$OUT/clf-act-ctx" ctx1b="$OUT/clf-act-ctx-2ep" ctx1s1="$OUT/clf3/act-ctx1-s1" \
  ctx1s2="$OUT/clf3/act-ctx1-s2" ctx2="$OUT/clf3/act-ctx2" ctx3="$OUT/clf3/act-ctx3" utt2="$OUT/clf-act-utt-2ep" utt1="$OUT/clf-act-utt" \
  lr2e4="$OUT/clf3/act-ctx1-lr2e4" ls3="$OUT/clf4/act-ctx1-ls-s3" ls4="$OUT/clf4/act-ctx1-ls-s4" utts1="$OUT/clf4/act-utt-s1" \
  ctx1s3="$OUT/clf4/act-ctx1-s3" ctx3s1="$OUT/clf4/act-ctx3-s1" --data "$DATA" --cache "$OUT/clf4/ens-probs" \
  --out ensemble-selection-14.json --keep 30
ctrldial classifier ensemble --out "$OUT/clf4/judge-ens4" "$OUT/clf-act-ctx" "$OUT/clf-act-ctx-2ep" "$OUT/clf-act-utt-2ep" "$OUT/clf4/act-ctx1-ls-s3"
for m in act-ctx1-ls-s3 act-ctx1-ls-s4 act-ctx1-s3 act-ctx3-s1 act-utt-s1 judge-ens4; do
  ctrldial classifier eval "$OUT/clf4/$m" --set data.path="$DATA"
  ctrldial classifier eval "$OUT/clf4/$m" --out "$OUT/clf4/$m/eval-full-split" --set data.path="$DATA" --set data.dedup=false
done

for v in utt ctx; do python benchmarks/classifier/class_bias.py "$OUT/clf-act-$v" --name "act-$v" --data "$DATA"; done
python benchmarks/classifier/collect.py act-utt-3k=/tmp/clf3k act-utt="$OUT/clf-act-utt" act-ctx="$OUT/clf-act-ctx" \
  act-utt-2ep="$OUT/clf-act-utt-2ep" act-ctx-2ep="$OUT/clf-act-ctx-2ep" act-ctx1-s1="$OUT/clf3/act-ctx1-s1" \
  act-ctx1-s2="$OUT/clf3/act-ctx1-s2" act-ctx2="$OUT/clf3/act-ctx2" act-ctx3="$OUT/clf3/act-ctx3" act-ctx1-lr2e4="$OUT/clf3/act-ctx1-lr2e4" judge-ens5="$OUT/clf3/judge-ens5" \
  act-ctx1-ls-s3="$OUT/clf4/act-ctx1-ls-s3" act-ctx1-ls-s4="$OUT/clf4/act-ctx1-ls-s4" act-ctx1-s3="$OUT/clf4/act-ctx1-s3" \
  act-ctx3-s1="$OUT/clf4/act-ctx3-s1" act-utt-s1="$OUT/clf4/act-utt-s1" judge-ens4="$OUT/clf4/judge-ens4"
