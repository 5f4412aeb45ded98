"""Collect classifier benchmark runs into results/<name>.json and print the README's results table.

    python benchmarks/classifier/collect.py act-utt=/work/clf-act-utt act-ctx=/work/clf-act-ctx

Each run folder holds what `ctrldial classifier train` and `ctrldial classifier eval` wrote
(ctrldial_classifier.json, eval.json); the commands are rebuilt from the saved train config, so a result
file names exactly how to reproduce it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

from ctrldial.classifier import read_metadata
from ctrldial.classifier.scorer import context_turns
from ctrldial.config import ClassifierConfig, DataConfig

HERE = Path(__file__).resolve().parent


def _sets(meta: dict) -> list[str]:
    """`--set` arguments for every train-config value that differs from the defaults."""
    defaults = {"classifier": dataclasses.asdict(ClassifierConfig()), "data": dataclasses.asdict(DataConfig())}
    out = []
    for section, values in meta["train_config"].items():
        for key, value in values.items():
            if value != defaults[section][key]:
                out.append(f"--set {section}.{key}={'null' if value is None else value}")
    return out


def collect(name: str, folder: Path, machine: str) -> dict:
    meta = read_metadata(folder)
    ev = json.loads((folder / "eval.json").read_text())
    # the whole official test split (dedup off), when evaluated into FOLDER/eval-full-split
    full = folder / "eval-full-split" / "eval.json"
    full_split = None
    if full.is_file():
        f = json.loads(full.read_text())
        full_split = {"test_utterances": f["n"], "accuracy": f["accuracy"], "macro_f1": f["macro_f1"], "per_class": f["per_class"],
                      "eval_command": f"ctrldial classifier eval {folder} --out {full.parent} --set data.path={ev['data']['source']} --set data.dedup=false"}
    if "members" in meta:
        return _collect_ensemble(name, folder, meta, ev, full_split, machine)
    data_path = meta["train_config"]["data"]["path"]
    return {
        "name": name,
        "train_command": " ".join(["ctrldial classifier train --out", str(folder), *_sets(meta)]),
        "eval_command": f"ctrldial classifier eval {folder} --set data.path={data_path}",
        "machine": machine,
        "base_model": meta["base_model"],
        "input": _input(meta),
        "train_utterances": meta["train_data"]["utterances"],
        "steps": meta["steps"],
        "train_wall_s": meta["wall_time_s"],
        "eval_wall_s": ev["wall_time_s"],
        "validation": {k: meta["validation_metrics"][k] for k in ("step", "accuracy", "macro_f1")},
        "history": meta["history"],
        **_test_fields(ev, full_split),
    }


def _input(meta: dict) -> str:
    turns = context_turns(meta)
    return "none" if turns == 0 else "previous" if turns == 1 else f"previous {turns} turns"


def _collect_ensemble(name: str, folder: Path, meta: dict, ev: dict, full_split: dict | None, machine: str) -> dict:
    """An ensemble: its members' training summed (they trained separately), its own test numbers."""
    members = [read_metadata(folder / m) for m in meta["members"]]
    data_path = members[0]["train_config"]["data"]["path"]
    return {
        "name": name,
        "train_command": " ".join(["ctrldial classifier ensemble --out", str(folder), *meta["member_sources"]]),
        "member_train_commands": [" ".join(["ctrldial classifier train --out", src, *_sets(m)]) for src, m in zip(meta["member_sources"], members)],
        "eval_command": f"ctrldial classifier eval {folder} --set data.path={data_path}",
        "machine": machine,
        "base_model": " + ".join(m["base_model"] for m in members),
        "input": f"ensemble of {len(members)}: " + ", ".join(_input(m) for m in members),
        "train_utterances": members[0]["train_data"]["utterances"],
        "steps": sum(m["steps"] for m in members),
        "train_wall_s": sum(m["wall_time_s"] for m in members),
        "eval_wall_s": ev["wall_time_s"],
        "member_validation": [{k: m["validation_metrics"][k] for k in ("step", "accuracy", "macro_f1")} for m in members],
        **_test_fields(ev, full_split),
    }


def _test_fields(ev: dict, full_split: dict | None) -> dict:
    """What `classifier eval` measured, the same for one classifier and an ensemble."""
    return {
        "test_utterances": ev["n"],
        "test_dedup": ev["data"]["dedup"],
        **{k: ev[k] for k in ("accuracy", "macro_f1", "per_class", "confusion", "labels")},
        "full_test_split": full_split,
        "platform": platform.platform(),
    }


def table(results: list[dict]) -> str:
    labels = results[0]["labels"]
    head = ["run", "input", "train utts", "steps", "train wall", "machine", "test acc (dedup)", "macro-F1", *[f"F1 {c}" for c in labels],
            "test acc (all 7,740)", "macro-F1 (all)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [
            r["name"], r["input"], f"{r['train_utterances']:,}", str(r["steps"]), f"{r['train_wall_s'] / 60:.1f} min",
            r["machine"], f"{100 * r['accuracy']:.2f}%", f"{r['macro_f1']:.3f}", *[f"{r['per_class'][c]['f1']:.3f}" for c in labels],
        ]
        full = r.get("full_test_split")
        cells += [f"{100 * full['accuracy']:.2f}%", f"{full['macro_f1']:.3f}"] if full else ["–", "–"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=DIR")
    ap.add_argument("--machine", default="2-core CPU")
    args = ap.parse_args()
    results = []
    for item in args.runs:
        name, folder = item.split("=", 1)
        results.append(collect(name, Path(folder), args.machine))
        (HERE / "results" / f"{name}.json").write_text(json.dumps(results[-1], indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
