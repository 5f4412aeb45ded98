"""The emotion judges' agreement table (emotion_judge.sh's last step): every candidate on the development hand
labels, the cross-validated rows pooled over their two folds, and the two chosen judges on the held-out labels.

    python benchmarks/definitive/emotion_judges.py WORK/emotion/judges --out benchmarks/definitive/results/emotion-judges

Writes ``table.md`` and ``table.json`` (and copies each agreement.json it read, verdicts included). Columns:
agreement on all labels, on the random half only (what a control figure's responses look like), macro-F1, the
precision / recall of every emotion, and the judge's accuracy and macro-F1 on the 2,000 human validation
utterances (``ctrldial_classifier.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ctrldial.classifier.metrics import classification_metrics
from ctrldial.data.corpus import EMOTIONS

ROWS = [  # (row name, part, agreement files relative to the judges folder, classifier folder for its human figures)
    ("judge-emo: MiniLM, weights power 1 (the runs' judge)", "dev", ["judge-emo-agree-dev"], None),
    ("MiniLM, power 0.5", "dev", ["minilm-p0.5/agree-dev"], "minilm-p0.5"),
    ("n-gram, power 1", "dev", ["ngram-p1.0/agree-dev"], "ngram-p1.0"),
    ("n-gram, power 0.5", "dev", ["ngram-p0.5/agree-dev"], "ngram-p0.5"),
    ("n-gram, power 0.25", "dev", ["ngram-p0.25/agree-dev"], "ngram-p0.25"),
    ("n-gram, no weights", "dev", ["ngram-none/agree-dev"], "ngram-none"),
    *((f"n-gram, power 0.5 + dev labels ×{r} (2-fold CV)", "dev (CV)",
       [f"cv/ngram-rep{r}-train0/agree-1", f"cv/ngram-rep{r}-train1/agree-0"], None) for r in (10, 30, 100, 300)),
    ("judge-emo (the runs' judge)", "held-out", ["judge-emo-agree-heldout"], None),
    ("**ngram-emo-gen** (primary): n-gram, power 0.5, dev ×100", "held-out", ["ngram-emo-gen"], "ngram-emo-gen"),
    ("**minilm-emo-gen** (second): MiniLM, power 0.5, dev ×100", "held-out", ["minilm-emo-gen"], "minilm-emo-gen"),
]


def pooled(files: list[Path]) -> dict:
    verdicts = [v for f in files for v in json.loads((f / "agreement.json").read_text())["verdicts"]]
    labels = list(EMOTIONS)
    m = classification_metrics([labels.index(v["label"]) for v in verdicts], [labels.index(v["judge"]) for v in verdicts], labels)
    rnd = [v for v in verdicts if v.get("draw") == "random"]
    return {"n": len(verdicts), "accuracy": m["accuracy"], "random_accuracy": sum(v["agrees"] for v in rnd) / len(rnd),
            "n_random": len(rnd), "macro_f1": m["macro_f1"], "per_class": m["per_class"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("judges", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    head = ["judge", "labels", "n", "agreement", "random half", "macro-F1",
            *(f"{e} P/R" for e in EMOTIONS), "human valid. acc / macro-F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = []
    for name, part, rel, folder in ROWS:
        files = [a.judges / r for r in rel]
        if not all((f / "agreement.json").is_file() for f in files):
            continue
        m = pooled(files)
        human = json.loads((a.judges / folder / "ctrldial_classifier.json").read_text())["validation_metrics"] if folder else None
        pr = [f"{m['per_class'][e]['precision']:.2f}/{m['per_class'][e]['recall']:.2f}" for e in EMOTIONS]
        hv = f"{human['accuracy']:.3f} / {human['macro_f1']:.3f}" if human else "–"
        lines.append(f"| {name} | {part} | {m['n']} | {m['accuracy']:.3f} | {m['random_accuracy']:.3f} ({m['n_random']}) | "
                     f"{m['macro_f1']:.3f} | " + " | ".join(pr) + f" | {hv} |")
        table.append({"judge": name, "labels": part, **m, "human_validation": human and {k: human[k] for k in ("accuracy", "macro_f1")}})
        for f, r in zip(files, rel):
            dest = a.out / r.replace("/", "_")
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(f / "agreement.json", dest / "agreement.json")
    md = "\n".join(lines) + "\n"
    (a.out / "table.md").write_text(md, encoding="utf-8")
    (a.out / "table.json").write_text(json.dumps(table, indent=1), encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
