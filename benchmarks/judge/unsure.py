"""An `unsure` threshold for the act judge: chosen on development labels, then measured once on the held-out ones.

    python benchmarks/judge/unsure.py choose FOLD_A.json FOLD_B.json --dev2 DEV2.json > results/unsure-dev-cv.json
    python benchmarks/judge/unsure.py heldout HELDOUT.json > results/judge-gen2-heldout-unsure.json

``choose`` reads `ctrldial judge agreement` outputs: each development fold judged by the MiniLM ×30 judge trained
on the *other* fold (2-fold cross-validation, the folds of run.sh), pools their verdicts (239 out-of-fold verdicts;
a fold holds only ~10 directives) and picks the smallest threshold of ``ctrldial.agreement.THRESHOLDS`` at which
directive and commissive precision on the sure verdicts both reach 0.85. If none does: the threshold with the best
mean of the two precisions among those that keep coverage >= 0.8. DEV2 (judge-gen on labels-dev2, which it was not
trained on) is a second development check, reported beside the choice, not used to make it.

``heldout`` summarises one held-out agreement made at the chosen threshold: coverage, agreement on the sure verdicts
(all and random draw), per-class precision / recall on them, and the gaps to the targets.
"""

from __future__ import annotations

import argparse
import json
import sys

from ctrldial.agreement import THRESHOLDS, sure_metrics

PRECISION, RECALL, AGREEMENT, COVERAGE_FLOOR = 0.85, 0.80, 0.90, 0.8
RULE_ACTS = ("directive", "commissive")


def table(verdicts: list[dict], labels: list[str]) -> list[dict]:
    gold = [labels.index(v["label"]) for v in verdicts]
    pred = [labels.index(v["judge"]) for v in verdicts]
    conf = [v["confidence"] for v in verdicts]
    return [sure_metrics(gold, pred, conf, labels, t) for t in THRESHOLDS]


def brief(row: dict, acts=RULE_ACTS) -> dict:
    """The figures the choice reads, at one threshold."""
    out = {"threshold": row["threshold"], "coverage": row["coverage"], "n_sure": row["n_sure"], "accuracy": row["accuracy"]}
    for a in acts:
        c = row["per_class"][a]
        out[a] = {"precision": c["precision"], "predicted": c["predicted"], "recall": c["recall"], "recall_all": c["recall_all"]}
    return out


def choose(fold_files: list[str], dev2: str | None) -> dict:
    folds = [json.load(open(f, encoding="utf-8")) for f in fold_files]
    labels = folds[0]["labels"]
    pooled = table([v for f in folds for v in f["verdicts"]], labels)
    met = [r for r in pooled if all(r["per_class"][a]["precision"] >= PRECISION for a in RULE_ACTS)]
    if met:
        chosen, how = met[0], f"smallest threshold with directive and commissive precision >= {PRECISION} on the pooled sure verdicts"
    else:
        covered = [r for r in pooled if r["coverage"] >= COVERAGE_FLOOR]
        chosen = max(covered, key=lambda r: sum(r["per_class"][a]["precision"] for a in RULE_ACTS))
        how = (f"no threshold reaches precision {PRECISION} for both directive and commissive on the pooled sure verdicts; "
               f"chosen: the best mean of the two precisions at coverage >= {COVERAGE_FLOOR}")
    out = {
        "what": "unsure threshold chosen by 2-fold cross-validation on labels-dev.jsonl (each fold judged by the MiniLM x30 "
                "judge trained on the other fold); precision / recall on the verdicts with confidence >= threshold",
        "rule": how, "chosen_threshold": chosen["threshold"], "at_chosen": brief(chosen),
        "folds": {f["labels_file"]: {"classifier": f["classifier"], "n": f["n"]} for f in folds},
        "pooled": [brief(r, labels) for r in pooled],
        "per_fold": {f["labels_file"]: [brief(r) for r in table(f["verdicts"], labels)] for f in folds},
    }
    if dev2:
        d = json.load(open(dev2, encoding="utf-8"))
        rows = table(d["verdicts"], labels)
        out["dev2_check"] = {
            "what": "labels-dev2 (240 responses judge-gen calls directive or commissive, 120 each) judged by judge-gen, "
                    "not trained on them: precision is meaningful here, recall is not (the draw is by verdict)",
            "labels_file": d["labels_file"], "classifier": d["classifier"],
            "at_chosen": brief(next(r for r in rows if r["threshold"] == chosen["threshold"])),
            "thresholds": [brief(r) for r in rows],
        }
    return out


def heldout(path: str) -> dict:
    a = json.load(open(path, encoding="utf-8"))
    if "sure" not in a:
        sys.exit(f"{path}: made without --unsure-below; run `ctrldial judge agreement ... --unsure-below T` with the chosen T")
    labels, sure = a["labels"], a["sure"]
    rnd = [v for v in a["verdicts"] if v.get("draw") == "random"]
    rnd_sure = [v for v in rnd if not v["unsure"]]
    gaps = {}
    for lab in labels:
        c = sure["per_class"][lab]
        gaps[lab] = {"precision": c["precision"], "precision_gap": max(0.0, PRECISION - c["precision"]),
                     "recall": c["recall"], "recall_gap": max(0.0, RECALL - c["recall"]),
                     "recall_all": c["recall_all"], "recall_all_gap": max(0.0, RECALL - c["recall_all"]),
                     "predicted": c["predicted"], "support_sure": c["support"], "support_all": c["support_all"]}
    rand_acc = sum(v["agrees"] for v in rnd_sure) / len(rnd_sure) if rnd_sure else None
    summary = {
        "threshold": a["unsure_below"], "n": a["n"], "coverage": a["coverage"], "n_sure": sure["n_sure"],
        "agreement_all": a["accuracy"], "agreement_sure": sure["accuracy"],
        "random_draw": {"n": len(rnd), "n_sure": len(rnd_sure), "coverage": len(rnd_sure) / len(rnd) if rnd else None,
                        "agreement_all": sum(v["agrees"] for v in rnd) / len(rnd) if rnd else None,
                        "agreement_sure": rand_acc, "agreement_sure_gap": None if rand_acc is None else max(0.0, AGREEMENT - rand_acc)},
        "per_class_sure": gaps,
        "targets": {"agreement_random": AGREEMENT, "precision": PRECISION, "recall": RECALL,
                    "note": "recall: among sure items of the act; recall_all: of every item of the act (an unsure one counts as not found)"},
    }
    return {"what": "judge-gen2 on labels-heldout.jsonl at the unsure threshold chosen on development labels (results/unsure-dev-cv.json); "
                    "measured once", "summary": summary, **a}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("choose")
    c.add_argument("folds", nargs=2)
    c.add_argument("--dev2")
    h = sub.add_parser("heldout")
    h.add_argument("agreement")
    args = p.parse_args()
    out = choose(args.folds, args.dev2) if args.cmd == "choose" else heldout(args.agreement)
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
