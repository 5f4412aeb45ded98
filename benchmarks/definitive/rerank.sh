#!/bin/bash
# The definitive comparison's third decoding: issue 10's best — null-label guidance γ = 3 and reranking 8 sampled
# candidates (top-p 0.9, temperature 0.7) by a discriminator that learned from the *validation* dialogues
# (benchmarks/control's reranker-valid; the judge learned from the train split). Same trained weights, the same
# 100 test contexts × 4 acts as run.sh's guided and unguided decodings, every method and seed.
#
#   RERANKER=/path/reranker-valid WORK=/tmp/definitive bash benchmarks/definitive/rerank.sh K N   # worker K of N
#
# Each worker takes every N-th (method, seed) from K on, one thread each (on the 2-core CPU: 2 workers); a
# finished eval (its record.json) is skipped, so a worker can be restarted. Then collect.sh.
set -euo pipefail
: "${RERANKER:?}" "${WORK:=/tmp/definitive}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
K=${1:?worker index} N=${2:?workers}
RR="--set generate.guidance_scale=3 --set generate.num_candidates=8 --set generate.do_sample=true
    --set generate.top_p=0.9 --set generate.temperature=0.7 --set generate.rerank_classifier=$RERANKER"
i=0
for m in full ia3 lora adalora prefix prompt p_tuning zero_shot; do
  for seed in 0 1 2; do
    run=$WORK/runs/$m/seed$seed
    [ -d $run ] || continue   # zero-shot: one seed
    if [ $((i % N)) -eq $K ]; then
      out=$WORK/runs/$m-reranked/seed$seed
      [ -f $out/record.json ] || ctrldial eval $run --contexts $run/contexts.jsonl --out $out --record $RR
    fi
    i=$((i + 1))
  done
done
