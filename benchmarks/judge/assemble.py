"""Join the hand labels with the draw's key into the development and held-out label files.

    python benchmarks/judge/assemble.py     # draw/{blind,hand-labels,key}.jsonl → labels-dev.jsonl, labels-heldout.jsonl

``weight`` is 1 / the item's chance to be drawn: with it, the stratified half no longer over-represents
rare verdicts (used by the human-corrected control, ctrldial/correction.py). The labeller wrote ``draw/hand-labels.jsonl`` ({id, label, note}) reading only ``draw/blind.jsonl``; the key
(method, requested act, the judge's verdict at draw time, draw, part) is joined in afterwards (``ctrldial.handlabels.join``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from draw import load  # the same pool the draw sampled from

from ctrldial.data.corpus import ACTS
from ctrldial.handlabels import join
from ctrldial.record import write_jsonl

HERE = Path(__file__).resolve().parent


def inclusion(lines: list[dict]) -> dict[str, float]:
    """Each item's chance to be drawn: uniformly (random part) or within its judge verdict (stratified part)."""
    pool = load()
    n, per_verdict = len(pool), Counter(r["predicted"] for r in pool)
    n_random = sum(r["draw"] == "random" for r in lines)
    n_strat = Counter(r["judge_at_draw"] for r in lines if r["draw"] == "stratified")
    r = n_random / n
    return {x["id"]: 1 - (1 - r) * (1 - n_strat[x["judge_at_draw"]] / per_verdict[x["judge_at_draw"]]) for x in lines}


def main() -> None:
    lines = join(HERE / "draw", ACTS)
    pi = inclusion(lines)
    for part in ("dev", "heldout"):
        rows = [{**{k: v for k, v in x.items() if k not in ("part", "note")}, "weight": round(1 / pi[x["id"]], 3), "note": x["note"]}
                for x in lines if x["part"] == part]
        out = HERE / f"labels-{part}.jsonl"
        write_jsonl(out, rows)
        print(f"{out.name}: {len(rows)} ({sum(r['draw'] == 'random' for r in rows)} random)")


if __name__ == "__main__":
    main()
