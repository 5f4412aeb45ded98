"""`ctrldial classifier eval`: accuracy, macro-F1, per-class scores and the confusion matrix on the test split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ctrldial.classifier.data import fingerprint, utterance_examples
from ctrldial.classifier.metrics import classification_metrics, confusion_png, format_table
from ctrldial.classifier.scorer import Scorer
from ctrldial.record import write_atomic, write_json
from ctrldial.config import Config
from ctrldial.data.corpus import load_corpus


def evaluate_classifier(dir: Path, cfg: Config, out: Path | None = None) -> dict[str, Any]:
    """Score every test utterance of ``cfg.data.path``; write eval.json and confusion.png into ``out`` (default ``dir``).

    The attribute, input format and text normalisation are the classifier's own (from its metadata);
    ``cfg`` supplies the corpus: data.path, data.dedup, data.on_error.
    """
    started = time.perf_counter()
    scorer = Scorer.load(dir)
    corpus = load_corpus(cfg.data.path, cfg.data.on_error, dedup=cfg.data.dedup)
    # raw text: the Scorer normalises exactly as the classifier was trained
    examples = utterance_examples(corpus, "test", scorer.attribute, normalize=False)
    texts = [ex.text for ex in examples]
    pred = scorer.predict_proba(texts, [list(ex.history) for ex in examples]).argmax(-1).tolist()
    metrics = classification_metrics([ex.label for ex in examples], pred, scorer.labels)
    result = {
        "classifier": str(dir),
        "attribute": scorer.attribute,
        "input": scorer.input,
        "data": {
            "source": corpus.source,
            "split": "test",
            "dedup": cfg.data.dedup,
            "removed_duplicate_dialogues": corpus.removed_duplicates.get("test", 0),
            "fingerprint": fingerprint(examples, scorer.labels, max(scorer.context_turns, 1)),
        },
        **metrics,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    out = out or dir
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval.json", result)
    title = f"{dir.name}: {scorer.attribute}, input={scorer.input}, test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
    write_atomic(out / "confusion.png", confusion_png(metrics, title))
    print(format_table(metrics))
    print(f"wrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return result
