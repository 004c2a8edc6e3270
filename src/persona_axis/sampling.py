"""Exact temperature + nucleus (top-p) sampling that is fast on CPUs with large vocabularies.

transformers' sampler sorts the whole vocabulary and calls multinomial every step; with a
49k vocabulary at batch 32 on 2 cores that costs more than the model's forward pass. We take
the top-256 candidates first (the nucleus almost always fits in them; rows where it does
not try the top 4096, then a full sort), then draw with the Gumbel-max trick from a seeded generator.
The draw is handed to generate() as a one-hot logit row, so its greedy step picks it.
"""

from __future__ import annotations

import torch

_CANDIDATES = (256, 4096)  # tiers of top-k tried before a full sort


class NucleusSampler:
    """A transformers LogitsProcessor; use with do_sample=False."""

    def __init__(self, temperature: float, top_p: float, generator: torch.Generator) -> None:
        if temperature <= 0:
            raise ValueError("temperature must be > 0 for sampling")
        self.temperature = temperature
        self.top_p = top_p
        self.generator = generator

    def _gumbel(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.generator.device).to(device)
        return -torch.log(-torch.log(u.clamp_(1e-20, 1.0 - 1e-7)))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float() / self.temperature
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)
        chosen = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
        rows = torch.arange(logits.shape[0], device=logits.device)
        for k in (*_CANDIDATES, logits.shape[-1]):
            k = min(k, logits.shape[-1])
            vals, idx = logits[rows].topk(k, dim=-1)  # sorted, descending
            probs = (vals - lse[rows]).exp()
            enough = probs.sum(dim=-1) >= self.top_p
            if k == logits.shape[-1]:
                enough[:] = True
            if enough.any():
                pick = self._pick(vals[enough], probs[enough])
                chosen[rows[enough]] = idx[enough].gather(1, pick[:, None])[:, 0]
            rows = rows[~enough]
            if rows.numel() == 0:
                break
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen[:, None], 0.0)
        return out

    def _pick(self, vals: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Gumbel-max over the nucleus: tokens whose preceding mass is below top_p (the first always)."""
        keep = (probs.cumsum(dim=-1) - probs) < self.top_p
        noisy = torch.where(keep, vals + self._gumbel(vals.shape, vals.device), torch.full_like(vals, float("-inf")))
        return noisy.argmax(dim=-1)


def sampling_kwargs(temperature: float, top_p: float, seed: int | None) -> dict:
    """generate() keyword arguments: greedy for temperature 0, else our seeded nucleus sampler."""
    from transformers import LogitsProcessorList

    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if temperature <= 0:
        return greedy
    gen = torch.Generator()
    gen.manual_seed(0 if seed is None else int(seed))
    return greedy | {"logits_processor": LogitsProcessorList([NucleusSampler(temperature, top_p, gen)])}
