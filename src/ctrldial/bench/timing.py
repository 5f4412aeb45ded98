"""How the bench measures: alternating runs on a machine whose speed drifts, medians, ratios."""

from __future__ import annotations

import statistics
from typing import Any, Callable

from ctrldial.errors import UserError


def alternate(a: Callable[[], float], b: Callable[[], float], repeats: int, extra_a: bool = False) -> tuple[list[float], list[float]]:
    """Rates of ``a`` and ``b`` measured alternately; ``extra_a`` runs the cheap side once more at the end."""
    ra, rb = [], []
    for _ in range(repeats):
        ra.append(a())
        rb.append(b())
    if extra_a:
        ra.append(a())
    return ra, rb


def summary(rates: list[float], unit: str) -> dict[str, Any]:
    """The median rate (what the tables show), its min and max, and every run's rate."""
    return {unit: statistics.median(rates), "min": min(rates), "max": max(rates), "runs": rates}


def ratio(part: dict[str, Any], unit: str, ours: str, base: str) -> dict[str, Any]:
    """``ours``' rate over ``base``'s, run by run (the i-th of each ran side by side, so drift cancels):
    the median of those ratios (the figure targets apply to), their min and max, and each one."""
    runs = [a / b for a, b in zip(part[ours]["runs"], part[base]["runs"])]
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def steady_rate(ends: list[float], tokens: list[int]) -> float:
    """Tokens/s from the end of the first step to the end of the last: one-off warm-up excluded for both loops."""
    if len(ends) < 2:
        raise UserError("train.max_steps: the bench needs at least 2 steps")
    return sum(tokens[1 : len(ends)]) / (ends[-1] - ends[0])
