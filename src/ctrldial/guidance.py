"""Classifier-free guidance on the label (Ho & Salimans 2022; Sanchez et al. 2023, "Stay on topic with
classifier-free guidance").

Each conditional prompt (context + requested label) decodes together with its negatives — the null-label
prompt (``generate.guidance_negative=null``; a model trained with ``data.label_dropout`` knows it) or the
prompts of every other label (``other_labels``; any run). They are rows of the same batches of ctrldial's
greedy loop, each with its own KV cache, and every row decodes the conditional row's tokens, chosen from

    guided = uncond + scale * (cond - uncond),   uncond = the mean of the negatives' logits.

Raw logits, not log-probabilities: the two differ by a constant per row, so the greedy tokens are the same.
``scale = 1`` is plain decoding; ctrldial then builds no negatives at all, so its tokens are exactly today's.
"""

from __future__ import annotations

import torch


class Guide:
    """Which rows serve which response, and the guided logits of a batch of rows.

    ``owner[i]`` is the prompt whose response prompt ``i`` serves: ``i`` itself for a conditional prompt,
    else the conditional prompt it is a negative of.
    """

    def __init__(self, owner: list[int], scale: float):
        self.owner, self.scale = owner, scale

    def _owners(self, rows: list[int], device) -> torch.Tensor:
        at = {row: j for j, row in enumerate(rows)}
        return torch.tensor([at[self.owner[r]] for r in rows], device=device)

    def combine(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The guided logits of each row's owner, one line per row of ``scores`` (the rows ``rows``)."""
        own = self._owners(rows, scores.device)
        neg = torch.tensor([self.owner[r] != r for r in rows], device=scores.device)
        sums = torch.zeros_like(scores).index_add_(0, own[neg], scores[neg])
        counts = torch.zeros(len(rows), dtype=scores.dtype, device=scores.device).index_add_(0, own[neg], torch.ones_like(own[neg], dtype=scores.dtype))
        if bool((counts[own] == 0).any()):
            raise RuntimeError("classifier-free guidance: a conditional row decodes without its negatives")
        cond, uncond = scores[own], sums[own] / counts[own][:, None]
        return uncond + self.scale * (cond - uncond)

    def follow(self, tokens: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Every row takes its owner's token."""
        return tokens[self._owners(rows, tokens.device)]


class Sampler:
    """Sampling in ctrldial's loop, as Hugging Face orders it: temperature, then top-k, then top-p (nucleus).

    Used where the loop must sample itself (guided or reranked candidates); plain sampling goes through
    ``model.generate``. ``seed`` makes the draws reproducible.
    """

    def __init__(self, temperature: float, top_k: int, top_p: float, seed: int):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / max(self.temperature, 1e-5)
        if 0 < self.top_k < scores.shape[-1]:
            kth = scores.topk(self.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            cum = sorted_scores.softmax(-1).cumsum(-1)
            drop = cum - sorted_scores.softmax(-1) >= self.top_p  # keep the smallest set whose mass reaches top_p
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        probs = scores.float().softmax(-1).cpu()
        return torch.multinomial(probs, 1, generator=self.generator)[:, 0].to(scores.device)


def expand(prompts: list[list[int]], negatives: list[list[list[int]]]) -> tuple[list[list[int]], list[int], list[list[int]]]:
    """All rows to decode: the prompts, then every prompt's negatives; each row's owner; each prompt's rows."""
    rows, owner, members = list(prompts), list(range(len(prompts))), []
    for i, negs in enumerate(negatives):
        own = [i]
        for neg in negs:
            own.append(len(rows))
            rows.append(neg)
            owner.append(i)
        members.append(own)
    return rows, owner, members
