"""Batched generation with left padding, running inside an intervention session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .interventions import InterventionPlan, InterventionSession
from .modeling import LoadedModel
from .sampling import sampling_kwargs


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


def _cache_kwarg(model: object) -> str:
    """Newer transformers call the KV cache argument `cache`; older ones `past_key_values`."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def generate_batch(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    spec: SamplingSpec,
    seed: int | None = None,
    streamer: object | None = None,
) -> tuple[list[list[int]], list[bool]]:
    """Generate one left-padded batch inside the caller's open session: (new tokens, finished).

    Tokens are cut before the first stop token. generate() never feeds back the last token
    it samples; for responses that hit max_new_tokens we feed it in one extra cached step so
    captures and monitors see every response token.
    """
    pad = pad_id(lm)
    ids, mask = left_pad(prompts, pad, lm.device)
    stops = list(lm.engine.eos_token_ids)
    kwargs: dict = {"max_new_tokens": spec.max_new_tokens, "pad_token_id": pad}
    if stops:
        kwargs["eos_token_id"] = stops
    kwargs.update(sampling_kwargs(spec.temperature, spec.top_p, spec.seed if seed is None else seed))
    if streamer is not None:
        kwargs["streamer"] = streamer
    with torch.inference_mode():
        out = lm.model.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **kwargs)
        new = out.sequences[:, ids.shape[1] :]
        last = new[:, -1:]
        if new.shape[1] and not torch.isin(last, torch.tensor(stops or [pad], device=last.device)).all():
            full_mask = torch.cat([mask, torch.ones_like(new)], dim=1)
            positions = (full_mask.cumsum(dim=1) - 1).clamp(min=0)[:, -1:]
            cache = getattr(out, "past_key_values", None)
            lm.model(
                input_ids=last,
                attention_mask=full_mask,
                position_ids=positions,
                use_cache=True,
                **{_cache_kwarg(lm.model): cache},
            )
    stop_set = set(stops)
    tokens, finished = [], []
    for row in new.tolist():
        cut = next((i for i, t in enumerate(row) if t in stop_set), None)
        tokens.append(row if cut is None else row[:cut])
        finished.append(cut is not None)
    return tokens, finished


def generate_tokens(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    spec: SamplingSpec = SamplingSpec(),
    plan: InterventionPlan | None = None,
) -> GenerationOutput:
    """Generate one batch under `plan`; the session's captures and cap stats come back with it."""
    with lm.session(plan or InterventionPlan()) as session:
        tokens, finished = generate_batch(lm, prompts, spec)
    return GenerationOutput(tokens=tokens, finished=finished, session=session)
