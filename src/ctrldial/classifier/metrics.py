"""Classification metrics as pure functions over (gold, pred, n_labels), a printable table and a heat map."""

from __future__ import annotations

from typing import Any, Sequence


def classification_metrics(gold: Sequence[int], pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows gold, columns predicted).

    A class never predicted has precision 0, one never seen has recall 0. Macro-F1 averages the classes that
    occur in gold or pred (scikit-learn's convention), so a class absent from a small sample does not count as 0.
    """
    n = len(labels)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    confusion = [[0] * n for _ in range(n)]
    for g, p in zip(gold, pred):
        confusion[g][p] += 1
    per_class: dict[str, dict[str, float | int]] = {}
    f1s = []
    for c, name in enumerate(labels):
        tp = confusion[c][c]
        predicted = sum(confusion[r][c] for r in range(n))
        support = sum(confusion[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if predicted or support:
            f1s.append(f1)
    correct = sum(confusion[c][c] for c in range(n))
    return {
        "n": len(gold),
        "accuracy": correct / len(gold) if gold else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "per_class": per_class,
        "labels": list(labels),
        "confusion": confusion,
    }


def format_table(m: dict[str, Any]) -> str:
    """Per-class precision/recall/F1/support, then accuracy and macro-F1, as aligned text."""
    width = max(12, *(len(name) for name in m["labels"]))
    lines = [f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
    for name in m["labels"]:
        c = m["per_class"][name]
        lines.append(f"{name:<{width}} {c['precision']:>9.3f} {c['recall']:>9.3f} {c['f1']:>9.3f} {c['support']:>9d}")
    lines.append(f"{'accuracy':<{width}} {m['accuracy']:>29.3f} {m['n']:>9d}")
    lines.append(f"{'macro-F1':<{width}} {m['macro_f1']:>29.3f}")
    return "\n".join(lines)


def confusion_png(m: dict[str, Any], title: str) -> bytes:
    """A heat map of the confusion matrix, coloured by row share (recall per gold class), annotated with counts."""
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    labels, counts = m["labels"], m["confusion"]
    shares = [[v / max(sum(row), 1) for v in row] for row in counts]
    size = 1.2 + 0.8 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="share of gold class")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for r, row in enumerate(counts):
        for c, v in enumerate(row):
            ax.text(c, r, str(v), ha="center", va="center", color="white" if shares[r][c] > 0.5 else "black", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()

