"""The definitive benchmark's headline table, from the records under results/ (guided/ and unguided/).

    python benchmarks/definitive/table.py benchmarks/definitive/results   # → results/table.md, results/table.json
    python benchmarks/definitive/table.py benchmarks/definitive/results/emotion --focus ""   # emotion: no per-label columns

Per method: the tuned learning rate, control accuracy (mean ± seed std, mean 95% interval over contexts) under
the validated judge and under the second judge, the paired comparison with the best method of the same decoding
(pooled over seeds), the corrected control, directive and commissive, fluency and cost; guidance against no
guidance for the same trained weights (paired); and Kendall's τ between the two judges' rankings.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ctrldial.metrics import paired_bootstrap_seeds
from ctrldial.record import judge_metrics, metric, per_label_metric
from ctrldial.report_table import judge_rank_agreement, judges_of, row_interval
from ctrldial.reporting import by_seed, compare_with_best, find_runs, group_runs, labels_of, read_generations

JUDGE2 = "ngram"


def summary(row, m) -> dict:
    vals = row.values(m.get)
    return {"mean": statistics.fmean(vals) if vals else None, "seed_std": statistics.stdev(vals) if len(vals) > 1 else None,
            "ci": row_interval(row, m), "seeds": len(vals)}


def text(s: dict, digits: int = 3) -> str:
    if s["mean"] is None:
        return "n/a"
    out = f"{s['mean']:.{digits}f}"
    out += f" ± {s['seed_std']:.{digits}f}" if s["seed_std"] is not None else ""
    return out + (f" [{s['ci'][0]:.{digits}f}, {s['ci'][1]:.{digits}f}]" if s.get("ci") else "")


def decoding(folder: Path, focus: list[str]) -> dict:
    runs = [r for r in find_runs(folder) if r.status == "ok"]
    rows = group_runs(runs)
    labels = labels_of(runs)
    versus = compare_with_best(rows, labels)
    other = judge_metrics(JUDGE2)[0]
    out = {}
    for row, v in zip(rows, versus):
        out[row.method] = {
            "row": row, "lr": row.runs[0].flat.get("train.lr"), "control": summary(row, metric("control_accuracy")),
            "control_judge2": summary(row, other), "corrected": summary(row, metric("corrected_control_accuracy")),
            **{lab: summary(row, per_label_metric(lab)) for lab in focus},
            "generation_perplexity": summary(row, metric("generation_perplexity")),
            "train_seconds": summary(row, metric("train_seconds")), "versus": v,
        }
    tau = judge_rank_agreement(rows, judges_of(runs))
    return {"methods": out, "labels": labels, "tau": tau}


def versus_text(v) -> str:
    if not v or v["status"] in ("n/a", "not comparable"):
        return v["status"] if v else "n/a"
    if v["status"] == "best":
        return "**best**"
    lo, hi = v["ci"]
    return f"{v['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] {'≈ best' if v['status'] == '≈ best' else v['status']}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--focus", default="directive,commissive", help="labels shown on their own (comma-separated; '' for none)")
    a = ap.parse_args()
    root, focus = a.root, [f for f in a.focus.split(",") if f]
    guided, unguided = decoding(root / "guided", focus), decoding(root / "unguided", focus)
    labels = guided["labels"]
    head = ["method", "tuned lr", "seeds", "control, guided γ=3", "vs best (paired)", f"[{JUDGE2} judge]", "corrected",
            *focus, "gen. ppl", "control, unguided", "vs best, unguided", f"unguided [{JUDGE2}]", "guidance gain (paired)", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = {}
    order = sorted(guided["methods"], key=lambda k: -(guided["methods"][k]["control"]["mean"] or 0))
    for name in order:
        g, u = guided["methods"][name], unguided["methods"].get(name)
        gain = None
        if u:
            pairs = list(zip(by_seed(g["row"]), by_seed(u["row"])))
            gain = paired_bootstrap_seeds([(read_generations(a), read_generations(b)) for a, b in pairs], labels)
        gain_text = f"{gain['difference']:+.3f} [{gain['ci'][0]:+.3f}, {gain['ci'][1]:+.3f}]" if gain else "n/a"
        lr = f"{g['lr']:.2g}" if g["lr"] and name != "zero_shot" else "–"
        cells = [name, lr, str(g["control"]["seeds"]), text(g["control"]), versus_text(g["versus"]), text(g["control_judge2"]),
                 text({**g["corrected"], "ci": None}), *(text({**g[lab], "ci": None}, 2) for lab in focus),
                 text({**g["generation_perplexity"], "ci": None}, 1), text(u["control"]) if u else "n/a",
                 versus_text(u["versus"]) if u else "n/a", text(u["control_judge2"]) if u else "n/a", gain_text,
                 text({**g["train_seconds"], "ci": None}, 0)]
        lines.append("| " + " | ".join(cells) + " |")
        table[name] = {"lr": g["lr"], "guided": {k: v for k, v in g.items() if k != "row"},
                       "unguided": {k: v for k, v in (u or {}).items() if k != "row"}, "guidance_gain": gain}
    taus = [f"{d}: Kendall τ = {t['tau']:.2f} over {t['rows']} methods (p = {t['p_value']:.2g})"
            for d, res in (("guided", guided), ("unguided", unguided)) for t in res["tau"]]
    md = "\n".join(lines) + "\n"
    if taus:
        md += f"\nRanking agreement, the primary judge against the {JUDGE2} judge — " + "; ".join(taus) + ".\n"
    (root / "table.md").write_text(md, encoding="utf-8")
    (root / "table.json").write_text(json.dumps({"methods": table, "tau": {"guided": guided["tau"], "unguided": unguided["tau"]}},
                                                indent=1, default=str), encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
