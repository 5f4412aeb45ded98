"""Join the hand labels with the draw's key into the development and held-out label files.

    python benchmarks/judge/assemble.py     # draw/{blind,hand-labels,key}.jsonl → labels-dev.jsonl, labels-heldout.jsonl

``weight`` is 1 / the item's chance to be drawn: with it, the stratified half no longer over-represents
rare verdicts (used by the human-corrected control, ctrldial/correction.py). The labeller wrote ``draw/hand-labels.jsonl`` ({id, label, note}) reading only ``draw/blind.jsonl``; the key
(method, requested act, the judge's verdict at draw time, draw, part) is joined in afterwards.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from draw import load  # the same pool the draw sampled from

HERE = Path(__file__).resolve().parent
ACTS = {"inform", "question", "directive", "commissive"}


def read(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())}


def inclusion(key: dict[str, dict]) -> dict[str, float]:
    """Each item's chance to be drawn: uniformly (random part) or within its judge verdict (stratified part)."""
    pool = load()
    n, per_verdict = len(pool), Counter(r["predicted"] for r in pool)
    n_random = sum(k["draw"] == "random" for k in key.values())
    n_strat = Counter(k["judge"] for k in key.values() if k["draw"] == "stratified")
    r = n_random / n
    return {i: 1 - (1 - r) * (1 - n_strat[k["judge"]] / per_verdict[k["judge"]]) for i, k in key.items()}


def main() -> None:
    blind, labels, key = (read(HERE / "draw" / f"{n}.jsonl") for n in ("blind", "hand-labels", "key"))
    pi = inclusion(key)
    assert set(blind) == set(labels) == set(key), "every drawn item has exactly one label and one key"
    parts: dict[str, list[dict]] = {"dev": [], "heldout": []}
    for item_id in sorted(blind):
        lab = labels[item_id]
        assert lab["label"] in ACTS, (item_id, lab["label"])
        k = key[item_id]
        parts[k["part"]].append({
            "context": blind[item_id]["context"], "response": blind[item_id]["response"], "label": lab["label"],
            "id": item_id, "method": k["method"], "requested": k["requested"], "judge_at_draw": k["judge"],
            "draw": k["draw"], "source": k["source"], "weight": round(1 / pi[item_id], 3), "note": lab.get("note", ""),
        })
    for part, rows in parts.items():
        out = HERE / f"labels-{part}.jsonl"
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{out.name}: {len(rows)} ({sum(r['draw'] == 'random' for r in rows)} random)")


if __name__ == "__main__":
    main()
