"""Human-corrected control: a judge's verdicts re-read through what hand labels say its verdicts mean.

For a requested act ``a``, the judge hands each response a verdict ``v``. On the held-out hand labels we
estimate ``P(true = a | judge = v)`` for every verdict (``precision_table``: its diagonal is the judge's
per-class precision, the rest where its errors go). The corrected control accuracy of act ``a`` is

    corrected_a = Σ_v  q(v | a) · P(true = a | judge = v)

with ``q(v | a)`` the share of responses requested as ``a`` that the judge calls ``v`` (empty responses
count as misses), and the headline is the mean over the requested acts, as for judged control. It assumes
that what a verdict means does not depend on the method that produced the response — the hand labels mix
every method, so it holds on average. Items may carry a sampling ``weight`` (the labels of
benchmarks/judge are half a uniform draw, half drawn per verdict: the weights undo that stratification).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def precision_table(verdicts: list[dict[str, Any]], labels: list[str]) -> dict[str, dict[str, float | None]]:
    """``table[v][a]`` = weighted share of responses the judge calls ``v`` whose hand label is ``a``."""
    mass: dict[str, dict[str, float]] = {v: defaultdict(float) for v in labels}
    for it in verdicts:
        mass[it["judge"]][it["label"]] += float(it.get("weight", 1.0))
    table = {}
    for v in labels:
        total = sum(mass[v].values())
        table[v] = {a: (mass[v][a] / total if total else None) for a in labels}
    return table


def corrected_control(rows: list[dict[str, Any]], labels: list[str], table: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    """Corrected control accuracy (overall and per requested act) of judged generation rows (``predicted`` set)."""
    per: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        a, v = r["requested"], r.get("predicted")
        if v is None:  # an empty reply is never the requested act
            per[a].append(0.0)
            continue
        p = table.get(v, {}).get(a)
        if p is None:
            return {"control_accuracy": None, "per_label_accuracy": {}, "note": f"the hand labels hold no response the judge calls {v!r}"}
        per[a].append(p)
    per_label = {a: (sum(per[a]) / len(per[a]) if per[a] else None) for a in labels}
    known = [x for x in per_label.values() if x is not None]
    return {"control_accuracy": sum(known) / len(known) if known else None, "per_label_accuracy": per_label}
