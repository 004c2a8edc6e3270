"""Batched generation with left padding, running inside an intervention session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .interventions import InterventionPlan, InterventionSession
from .modeling import LoadedModel


@dataclass(frozen=True)
class SamplingSpec:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class GenerationOutput:
    tokens: list[list[int]]  # new tokens per sequence, cut before the first stop token
    finished: list[bool]  # True when a stop token ended the sequence
    session: InterventionSession


def pad_id(lm: LoadedModel) -> int:
    tok = lm.tokenizer
    if tok is not None and tok.pad_token_id is not None:
        return int(tok.pad_token_id)
    stops = lm.engine.eos_token_ids
    return int(stops[0]) if stops else 0


def left_pad(
    seqs: Sequence[Sequence[int]], pad: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), padded on the left so every sequence ends at the same column."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def _cut(row: list[int], stops: set[int]) -> tuple[list[int], bool]:
    for i, t in enumerate(row):
        if t in stops:
            return row[:i], True
    return row, False


def generate_tokens(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    spec: SamplingSpec = SamplingSpec(),
    plan: InterventionPlan | None = None,
    session: InterventionSession | None = None,
) -> GenerationOutput:
    """Generate for one left-padded batch; pass `session` to accumulate into an open one."""
    if session is None:
        with lm.session(plan or InterventionPlan()) as s:
            return generate_tokens(lm, prompts, spec, session=s)
    ids, mask = left_pad(prompts, pad_id(lm), lm.device)
    kwargs: dict = {"max_new_tokens": spec.max_new_tokens, "pad_token_id": pad_id(lm)}
    stops = list(lm.engine.eos_token_ids)
    if stops:
        kwargs["eos_token_id"] = stops
    if spec.temperature > 0:
        kwargs.update(do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    generator_state = None
    if spec.seed is not None:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(spec.seed)
    try:
        with torch.inference_mode():
            out = lm.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    finally:
        if generator_state is not None:
            torch.random.set_rng_state(generator_state)
    new = out[:, ids.shape[1] :].tolist()
    cut = [_cut(row, set(stops)) for row in new]
    return GenerationOutput(tokens=[c[0] for c in cut], finished=[c[1] for c in cut], session=session)
