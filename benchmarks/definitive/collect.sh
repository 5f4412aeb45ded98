#!/bin/bash
# After run.sh (all queues), rerank.sh, emotion.sh and emotion_judge.sh: the second judge, the committed results,
# the reports, the tables.
#
#   WORK=/tmp/definitive JUDGE2=/path/ngram-gen2 bash benchmarks/definitive/collect.sh [acts|emotion]   # default: both
#
# Emotion: the records are judged again by the validated emotion judges (emotion_judge.sh): ngram-emo-gen as the
# primary judge (it replaces judge-emo, the runs' own judge, whose figures stay in each record's `rescored` history)
# and minilm-emo-gen as the second (`--as minilm`).
set -euo pipefail
: "${WORK:?}" "${JUDGE2:?}"
B=benchmarks/definitive
R=${R:-$B/results}
EJ=$WORK/emotion/judges
PART=${1:-all}
copy() {  # from to: records and generations, never weights
  mkdir -p $2 && cp $1/record.json $1/generations.jsonl $2/
}
if [ $PART != emotion ]; then
python $B/annotate_reranked.py $WORK/runs/*-reranked/seed* > /dev/null   # the reranker and code of rerank.sh's evals
ctrldial rescore $WORK/runs/*/seed* --classifier $JUDGE2 --as ngram > /dev/null
for d in $WORK/runs/*/seed*; do
  m=$(basename $(dirname $d)); s=$(basename $d)
  case $m in
    *-unguided) copy $d $R/unguided/${m%-unguided}/$s ;;
    *-reranked) copy $d $R/reranked/${m%-reranked}/$s ;;
    *) copy $d $R/guided/$m/$s ;;
  esac
done
for m in $WORK/tune/*/; do mkdir -p $R/tune/$(basename $m); cp $m/trials.md $m/best.yaml $R/tune/$(basename $m)/; done
for k in guided unguided reranked; do [ -d $R/$k ] && ctrldial report $R/$k > /dev/null; done
python $B/table.py $R
fi
[ $PART != acts ] || exit 0
# emotion (emotion.sh): judged again by the validated emotion judges, the same layout under results/emotion
ctrldial rescore $WORK/emotion/runs/*/seed* --classifier $EJ/ngram-emo-gen > /dev/null
ctrldial rescore $WORK/emotion/runs/*/seed* --classifier $EJ/minilm-emo-gen --as minilm > /dev/null
for d in $WORK/emotion/runs/*/seed*; do
  m=$(basename $(dirname $d)); s=$(basename $d)
  case $m in *-unguided) copy $d $R/emotion/unguided/${m%-unguided}/$s ;; *) copy $d $R/emotion/guided/$m/$s ;; esac
done
ctrldial report $R/emotion/guided > /dev/null && ctrldial report $R/emotion/unguided > /dev/null
python $B/table.py $R/emotion --focus "" --judge2 minilm
