"""`ctrldial data stats`: what is in a corpus, per split, and what the current config builds from it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ctrldial.config import DataConfig
from ctrldial.data.corpus import ACTS, EMOTIONS, duplicate_counts, load_corpus, remove_train_duplicates
from ctrldial.data.examples import build_examples


def corpus_stats(cfg: DataConfig) -> dict[str, Any]:
    corpus = load_corpus(cfg.path, cfg.on_error, dedup=False)
    out: dict[str, Any] = {"source": corpus.source, "splits": {}, "duplicates": duplicate_counts(corpus)}
    for split, ds in corpus.splits.items():
        acts = Counter(a for d in ds for a in d.acts)
        emos = Counter(e for d in ds for e in d.emotions)
        n_utt = sum(len(d.utterances) for d in ds)
        out["splits"][split] = {
            "dialogues": len(ds),
            "utterances": n_utt,
            "avg_turns": round(n_utt / max(len(ds), 1), 3),
            "acts": {name: acts.get(i, 0) for i, name in enumerate(ACTS)},
            "emotions": {name: emos.get(i, 0) for i, name in enumerate(EMOTIONS)},
            "skipped_malformed": corpus.skipped.get(split, 0),
        }
    if cfg.dedup:
        remove_train_duplicates(corpus)
        out["duplicates"]["removed_by_dedup"] = dict(corpus.removed_duplicates)
    for split in corpus.splits:
        out["splits"][split]["examples"] = len(build_examples(corpus, split, cfg))
    out["examples_config"] = {"max_context_turns": cfg.max_context_turns, "dedup": cfg.dedup, "normalize": cfg.normalize}
    return out


def format_stats(s: dict[str, Any]) -> str:
    lines = [f"corpus: {s['source']}"]
    head = f"{'split':<11}{'dialogues':>10}{'utterances':>11}{'avg turns':>10}{'examples':>10}   acts"
    lines.append(head)
    for split, v in s["splits"].items():
        total = max(v["utterances"], 1)
        acts = "  ".join(f"{k} {n} ({100 * n / total:.1f}%)" for k, n in v["acts"].items())
        lines.append(f"{split:<11}{v['dialogues']:>10,}{v['utterances']:>11,}{v['avg_turns']:>10.2f}{v['examples']:>10,}   {acts}")
    for split, v in s["splits"].items():
        total = max(v["utterances"], 1)
        emos = ", ".join(f"{k} {100 * n / total:.1f}%" for k, n in v["emotions"].items())
        lines.append(f"emotions {split}: {emos}")
    d = s["duplicates"]
    lines.append(
        "duplicates: " + ", ".join(f"{k} {v}" for k, v in d.items() if not isinstance(v, dict))
        + (f"; removed by data.dedup: {d['removed_by_dedup']}" if "removed_by_dedup" in d else "")
    )
    skipped = {k: v["skipped_malformed"] for k, v in s["splits"].items() if v["skipped_malformed"]}
    if skipped:
        lines.append(f"skipped malformed dialogues (data.on_error=skip): {skipped}")
    lines.append(f"examples: every utterance after the first, context {s['examples_config']['max_context_turns']} turns, "
                 f"after dedup={s['examples_config']['dedup']}")
    return "\n".join(lines)
