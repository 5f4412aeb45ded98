#!/bin/bash
# After run.sh (both queues) and emotion.sh: the second judge, the committed results, the reports, the tables.
#
#   WORK=/tmp/definitive JUDGE2=/path/ngram-gen2 bash benchmarks/definitive/collect.sh
set -euo pipefail
: "${WORK:?}" "${JUDGE2:?}"
B=benchmarks/definitive
R=${R:-$B/results}
ctrldial rescore $WORK/runs/*/seed* --classifier $JUDGE2 --as ngram > /dev/null
copy() {  # from to: records and generations, never weights
  mkdir -p $2 && cp $1/record.json $1/generations.jsonl $2/
}
for d in $WORK/runs/*/seed*; do
  m=$(basename $(dirname $d)); s=$(basename $d)
  case $m in *-unguided) copy $d $R/unguided/${m%-unguided}/$s ;; *) copy $d $R/guided/$m/$s ;; esac
done
for m in $WORK/tune/*/; do mkdir -p $R/tune/$(basename $m); cp $m/trials.md $m/best.yaml $R/tune/$(basename $m)/; done
ctrldial report $R/guided > /dev/null && ctrldial report $R/unguided > /dev/null
python $B/table.py $R
# emotion (emotion.sh): the same layout under results/emotion
for d in $WORK/emotion/runs/*/seed*; do
  m=$(basename $(dirname $d)); s=$(basename $d)
  case $m in *-unguided) copy $d $R/emotion/unguided/${m%-unguided}/$s ;; *) copy $d $R/emotion/guided/$m/$s ;; esac
done
ctrldial report $R/emotion/guided > /dev/null && ctrldial report $R/emotion/unguided > /dev/null
python $B/table.py $R/emotion --focus ""
