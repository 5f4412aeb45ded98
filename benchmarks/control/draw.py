"""Draw responses of one `ctrldial eval` (or run) folder to read by hand, blind to the requested act and the verdict.

    python benchmarks/control/draw.py RESULTS_DIR --out benchmarks/control/hand --n 200

writes ``blind.jsonl`` (id, context, response: all the reader sees) and ``key.jsonl`` (id → requested act,
judge verdict, row). After the labels are written (``hand-labels.jsonl``: id, label, note — by reading each
response against benchmarks/judge/GUIDELINE.md), ``--score`` joins them with the key: how often the reading
agrees with the requested act, and with the judge.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

ACTS = ("inform", "question", "directive", "commissive")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def draw(results: Path, out: Path, n: int, seed: int) -> None:
    rows = read(results / "generations.jsonl")
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), n)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "blind.jsonl", "w", encoding="utf-8") as b, open(out / "key.jsonl", "w", encoding="utf-8") as k:
        for j, i in enumerate(picked):
            r, item = rows[i], f"c{j:03d}"
            b.write(json.dumps({"id": item, "context": r["context"], "response": r["generation"]}, ensure_ascii=False) + "\n")
            k.write(json.dumps({"id": item, "row": i, "requested": r["requested"], "judge": r.get("predicted"),
                                "source": str(results)}) + "\n")
    print(f"{out}: {n} responses drawn from {len(rows)} (seed {seed})")


def score(out: Path) -> dict:
    key = {k["id"]: k for k in read(out / "key.jsonl")}
    labels = {h["id"]: h["label"] for h in read(out / "hand-labels.jsonl")}
    assert set(labels) == set(key), "every drawn response needs one hand label"
    items = [(key[i]["requested"], labels[i], key[i]["judge"]) for i in key]
    per = {a: [h == a for r, h, _ in items if r == a] for a in ACTS}
    result = {
        "n": len(items),
        "agree_with_requested": sum(r == h for r, h, _ in items) / len(items),
        "per_requested_act": {a: {"n": len(v), "agree": sum(v) / len(v) if v else None} for a, v in per.items()},
        "judge_agrees_with_reading": sum(j == h for _, h, j in items) / len(items),
        "hand_label_counts": dict(Counter(h for _, h, _ in items)),
    }
    (out / "agreement.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def versus(a: Path, b: Path) -> dict:
    """Two hand-labelled draws of the same rows (same seed, same-size generations): which one the reading favours,
    with an exact McNemar test on the discordant pairs."""
    def load(d: Path) -> dict:
        key = {k["id"]: k for k in read(d / "key.jsonl")}
        labels = {h["id"]: h["label"] for h in read(d / "hand-labels.jsonl")}
        return {(key[i]["row"], key[i]["requested"]): labels[i] == key[i]["requested"] for i in key}

    return {"a": str(a), "b": str(b), **versus_counts(load(a), load(b))}


def versus_counts(ha: dict, hb: dict) -> dict:
    """Agreement of two readings of the same rows (row → reading agrees with the request), exact McNemar p."""
    from math import comb

    assert ha.keys() == hb.keys(), "the two draws must hold the same rows"
    only_a = sum(ha[k] and not hb[k] for k in ha)
    only_b = sum(hb[k] and not ha[k] for k in ha)
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"n": len(ha), "agree_a": sum(ha.values()) / len(ha), "agree_b": sum(hb.values()) / len(hb),
            "only_a_agrees": only_a, "only_b_agrees": only_b, "mcnemar_exact_p": p}


def judges_versus(out: Path, agreement: Path) -> dict:
    """The judge of the draw (its verdicts in key.jsonl) against another judge on the same hand labels (``agreement``:
    `ctrldial judge agreement` of the joined draw): which agrees with the reading more, exact McNemar."""
    key = {k["id"]: k for k in read(out / "key.jsonl")}
    labels = {h["id"]: h["label"] for h in read(out / "hand-labels.jsonl")}
    other = {v["id"]: v["judge"] for v in json.loads(agreement.read_text(encoding="utf-8"))["verdicts"]}
    assert set(other) == set(key), "the agreement must cover the draw's responses"
    return {"draw_judge": "key.jsonl", "other_judge": str(agreement),
            **versus_counts({i: key[i]["judge"] == labels[i] for i in key}, {i: other[i] == labels[i] for i in key})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="?")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score", action="store_true", help="join hand-labels.jsonl with the key and write agreement.json")
    ap.add_argument("--versus", type=Path, help="another hand-labelled draw of the same rows: paired comparison (McNemar)")
    ap.add_argument("--judge-versus", type=Path, metavar="AGREEMENT",
                    help="another judge's agreement.json on this draw: the draw's judge against it on the reading (McNemar)")
    a = ap.parse_args()
    if a.judge_versus:
        print(json.dumps(judges_versus(a.out, a.judge_versus), indent=2))
    elif a.versus:
        print(json.dumps(versus(a.versus, a.out), indent=2))
    elif a.score:
        print(json.dumps(score(a.out), indent=2))
    else:
        draw(a.results, a.out, a.n, a.seed)


if __name__ == "__main__":
    main()
