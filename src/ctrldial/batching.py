"""Index batches of similar length, for training, generation and the classifier alike.

Inference takes every example sorted by length (``length_sorted_batches``): padding is smallest, and the
longest batch comes first so memory peaks at once. Training shuffles (``shuffled_batches``), sorting
only inside random groups of batches, so padding stays small while the epoch stays random.
"""

from __future__ import annotations

import random
from typing import Sequence


def _cut(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def _by_length(indices: list[int], lengths: Sequence[int], longest_first: bool) -> list[int]:
    # a stable sort, also reversed: equal lengths keep their order either way
    return sorted(indices, key=lengths.__getitem__, reverse=longest_first)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches, longest first, so padding is small and memory peaks in the first batch."""
    return _cut(_by_length(list(range(len(lengths))), lengths, longest_first=True), batch_size)


def shuffled_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, group_batches: int | None = 50, longest_first: bool = True
) -> list[list[int]]:
    """One epoch of index batches: shuffle, sort each group of ``group_batches`` batches by length, shuffle the batches.

    ``group_batches=None`` skips the sorting (plain shuffled batches). ``rng`` is advanced, so a caller
    that keeps one ``rng`` across epochs gets a new order each epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_batches:
        group = batch_size * group_batches  # a whole number of batches: no batch straddles two groups
        order = [i for s in range(0, len(order), group) for i in _by_length(order[s : s + group], lengths, longest_first)]
    batches = _cut(order, batch_size)
    rng.shuffle(batches)
    return batches


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, group: bool) -> list[list[int]]:
    """Shuffled batches from ``seed``; with ``group``, examples of similar length share a batch (less padding)."""
    return shuffled_batches(lengths, batch_size, random.Random(seed), 50 if group else None)
