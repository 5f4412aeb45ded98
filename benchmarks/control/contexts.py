"""Contexts files for `ctrldial eval` from the real DailyDialog: the quality benchmark's test contexts, and
validation contexts (for choosing decoding options; test contexts are for final runs only).

    python benchmarks/control/contexts.py --data ../shared/data/dailydialog --out benchmarks/control/contexts

writes test-500.jsonl (exactly the 500 contexts of benchmarks/quality: same data section, same seed) and
valid-100.jsonl (100 validation contexts, seeded). Each line: context, reference, reference_label, id.
The files are derived from the corpus, so they are not committed; this script remakes them in seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from ctrldial.config import build_config
from ctrldial.data.corpus import ACTS
from ctrldial.data.examples import build_examples, load_splits, sample_examples

QUALITY = Path(__file__).parents[1] / "quality" / "quality.yaml"


def write(path: Path, examples) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps({"id": f"{ex.dialogue_id}:{ex.turn}", "context": list(ex.context), "reference": ex.response,
                                "reference_label": ACTS[ex.act]}) + "\n")
    print(f"{path}: {len(examples)} contexts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the DailyDialog folder")
    ap.add_argument("--out", default="benchmarks/control/contexts")
    ap.add_argument("--valid", type=int, default=100)
    args = ap.parse_args()
    base = yaml.safe_load(QUALITY.read_text())["base"]
    cfg = build_config(None, [f"data.path={args.data}"], base={"data": base["data"]})
    splits = load_splits(cfg.data)
    write(Path(args.out) / "test-500.jsonl", splits.test)
    valid = sample_examples(build_examples(splits.corpus, "validation", cfg.data), args.valid, cfg.data.seed + 1)
    write(Path(args.out) / f"valid-{args.valid}.jsonl", valid)


if __name__ == "__main__":
    main()
