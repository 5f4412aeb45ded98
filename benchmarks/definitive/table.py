"""The definitive benchmark's headline table, from the records under results/ (unguided/, guided/, reranked/).

    python benchmarks/definitive/table.py benchmarks/definitive/results   # → results/table.md, results/table.json
    python benchmarks/definitive/table.py benchmarks/definitive/results/emotion --focus "" --judge2 minilm   # emotion

Per method and decoding (each folder present of ``DECODINGS``): control accuracy (mean ± seed std, mean 95%
interval over contexts) under the primary judge, the paired comparison with the best method of that decoding
(pooled over seeds) and the figure under the second judge. Then each decoding against the one before it on the
same trained weights (paired), and, for the last decoding, the corrected control, the focus labels, fluency and
how often a response says the requested label's name (``label_word_rate``, computed here from the generations);
the tuned learning rate and training time; and Kendall's τ between the two judges' rankings per decoding.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ctrldial.metrics import label_word_rate, paired_bootstrap_seeds
from ctrldial.record import judge_metrics, metric, per_label_metric
from ctrldial.report_table import judge_rank_agreement, judges_of, row_interval
from ctrldial.reporting import by_seed, compare_with_best, find_runs, group_runs, labels_of, read_generations

DECODINGS = {"unguided": "unguided", "guided": "guided γ=3", "reranked": "γ=3 + rerank 8"}
"""results/<folder> → its name in the table, in the order each builds on the one before."""


def summary(row, m) -> dict:
    return {**spread(row.values(m.get)), "ci": row_interval(row, m)}


def spread(vals: list[float]) -> dict:
    """Mean, seed std and count of per-seed values (no interval: ``summary`` adds the record's)."""
    return {"mean": statistics.fmean(vals) if vals else None, "seed_std": statistics.stdev(vals) if len(vals) > 1 else None,
            "ci": None, "seeds": len(vals)}


def text(s: dict, digits: int = 3, ci: bool = True) -> str:
    if s["mean"] is None:
        return "n/a"
    out = f"{s['mean']:.{digits}f}"
    out += f" ± {s['seed_std']:.{digits}f}" if s["seed_std"] is not None else ""
    return out + (f" [{s['ci'][0]:.{digits}f}, {s['ci'][1]:.{digits}f}]" if ci and s.get("ci") else "")


def decoding(folder: Path, focus: list[str], judge2: str) -> dict:
    runs = [r for r in find_runs(folder) if r.status == "ok"]
    rows = group_runs(runs)
    labels = labels_of(runs)
    versus = compare_with_best(rows, labels)
    other = judge_metrics(judge2)[0]
    out = {}
    for row, v in zip(rows, versus):
        out[row.method] = {
            "row": row, "lr": row.runs[0].flat.get("train.lr"), "control": summary(row, metric("control_accuracy")),
            "control_judge2": summary(row, other), "corrected": summary(row, metric("corrected_control_accuracy")),
            **{lab: summary(row, per_label_metric(lab)) for lab in focus},
            "generation_perplexity": summary(row, metric("generation_perplexity")),
            "label_word": spread([label_word_rate(read_generations(r)) for r in by_seed(row)]),
            "train_seconds": summary(row, metric("train_seconds")), "versus": v,
        }
    return {"methods": out, "labels": labels, "tau": judge_rank_agreement(rows, judges_of(runs))}


def versus_text(v) -> str:
    if not v or v["status"] in ("n/a", "not comparable"):
        return v["status"] if v else "n/a"
    if v["status"] == "best":
        return "**best**"
    lo, hi = v["ci"]
    return f"{v['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] {v['status']}"


def gain(after: dict | None, before: dict | None, labels: list[str]) -> dict | None:
    """The later decoding against the earlier one on the same trained weights, paired over contexts, pooled over seeds."""
    if not after or not before:
        return None
    pairs = list(zip(by_seed(after["row"]), by_seed(before["row"])))
    return paired_bootstrap_seeds([(read_generations(a), read_generations(b)) for a, b in pairs], labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--focus", default="directive,commissive", help="labels shown on their own (comma-separated; '' for none)")
    ap.add_argument("--judge2", default="ngram", help="the second judge's name in the records (`rescore --as NAME`)")
    a = ap.parse_args()
    root, focus, judge2 = a.root, [f for f in a.focus.split(",") if f], a.judge2
    decs = {k: decoding(root / k, focus, judge2) for k in DECODINGS if (root / k).is_dir()}
    names, last = list(decs), decs[list(decs)[-1]]
    labels = last["labels"]
    head = ["method", "tuned lr", "seeds"]
    for k in names:
        head += [f"control, {DECODINGS[k]}", "vs best (paired)", f"[{judge2} judge]"]
    head += [f"{DECODINGS[b]} → {DECODINGS[k]} (paired)" for b, k in zip(names, names[1:])]
    head += [f"corrected, {DECODINGS[names[-1]]}", *focus, "gen. ppl", "says the label", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = {}
    for name in sorted(last["methods"], key=lambda k: -(last["methods"][k]["control"]["mean"] or 0)):
        cols = {k: decs[k]["methods"].get(name) for k in names}
        gains = {f"{b}→{k}": gain(cols[k], cols[b], labels) for b, k in zip(names, names[1:])}
        g = cols[names[-1]]
        lr = f"{g['lr']:.2g}" if g["lr"] and name != "zero_shot" else "–"
        cells = [name, lr, str(g["control"]["seeds"])]
        for k in names:
            c = cols[k]
            cells += [text(c["control"]), versus_text(c["versus"]), text(c["control_judge2"])] if c else ["n/a"] * 3
        cells += [f"{d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d else "n/a" for d in gains.values()]
        cells += [text(g["corrected"], ci=False), *(text(g[lab], 2, ci=False) for lab in focus),
                  text(g["generation_perplexity"], 1, ci=False), text(g["label_word"], 3, ci=False),
                  text(g["train_seconds"], 0, ci=False)]
        lines.append("| " + " | ".join(cells) + " |")
        table[name] = {"lr": g["lr"], **{k: {f: v for f, v in (cols[k] or {}).items() if f != "row"} for k in names},
                       "gains": gains}
    taus = [f"{DECODINGS[k]}: Kendall τ = {t['tau']:.2f} over {t['rows']} methods (p = {t['p_value']:.2g})"
            for k in names for t in decs[k]["tau"]]
    md = "\n".join(lines) + "\n"
    if taus:
        md += f"\nRanking agreement, the primary judge against the {judge2} judge — " + "; ".join(taus) + ".\n"
    (root / "table.md").write_text(md, encoding="utf-8")
    (root / "table.json").write_text(json.dumps({"methods": table, "tau": {k: decs[k]["tau"] for k in names}}, indent=1, default=str),
                                     encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
