"""`ctrldial demo`: the whole comparison, offline, at a small budget — classifier, four methods, report.

The sweep below is the same as ``configs/sweeps/demo.yaml`` (a test keeps them equal); it lives in code
so that the demo also works from an installed wheel, which does not carry ``configs/``. Budgets were
measured on 2 shared CPU cores: see docs/README-sections.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ctrldial.errors import UserError

DEMO_SWEEP: dict[str, Any] = {
    "name": "demo",
    "base": {
        "data": {
            "path": "sample",
            "attribute": "act",
            "max_context_turns": 4,
            "max_train_examples": 1000,
            "max_valid_examples": 32,
            "max_eval_examples": 32,
            "max_length": 128,
        },
        "model": {"name": "smollm2-135m"},
        "method": {"num_virtual_tokens": 20},
        "train": {"max_steps": 24, "batch_size": 8, "eval_every": 12, "patience": 0, "tracker": "none"},
        "generate": {"max_new_tokens": 20, "batch_size": 64},
        "eval": {"sanity_prompts": 4},
        "classifier": {"model": "minilm-l6", "epochs": 2.0, "max_length": 64, "eval_every": 40},
    },
    "grid": {"method.name": ["lora", "prefix", "prompt"]},
    # zero-shot states the act through SmolLM2's chat template: an instruct model's fair floor
    "points": [{"method.name": "zero_shot", "data.template": "chat"}],
    "classifier": {"train": True, "set": {"data.max_train_examples": None}},
}


def demo(out: Path, config_files: list[str] | None = None, overrides: list[str] | None = None) -> None:
    """Train the judge, run zero-shot, LoRA, prefix and prompt tuning, write the report; finished points are reused."""
    from ctrldial.reporting import report
    from ctrldial.sweep import run_sweep
    from ctrldial.sweepspec import spec_from_dict

    out = Path(out)
    started = time.perf_counter()
    spec = spec_from_dict(DEMO_SWEEP, "demo sweep (src/ctrldial/demo.py)")
    summary = run_sweep(spec, out, overrides=overrides, config_files=config_files)
    page = report(out)
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    print(f"\ndemo finished in {minutes} min {seconds:02d} s: {len(summary.ran)} run(s), {len(summary.skipped)} reused, "
          f"{len(summary.failed)} failed")
    print(f"report: {page}")
    print(f"table:  {out / 'report' / 'results.md'}")
    if summary.ran or summary.skipped:
        first = sorted(summary.ran + summary.skipped)[0]
        print(f"chat:   ctrldial chat {out / first}")
    if summary.failed:
        raise UserError(f"demo: {len(summary.failed)} run(s) failed ({', '.join(n for n, _ in summary.failed)}); "
                        f"their errors are in the report and in {out}/<run>/record.json")
