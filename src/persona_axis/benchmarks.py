"""Speed benchmarks measured as ratios within one run (interleaved repetitions, medians)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .generation import left_pad, pad_id
from .interventions import Add, Cap, InterventionPlan
from .modeling import LoadedModel

BENCH_REQUESTS = [
    "Can you suggest a quick dinner I can make with eggs and spinach?",
    "How do I politely decline a meeting invitation?",
    "Explain what a mortgage is in two sentences.",
    "What are some good stretches after a long run?",
    "Write a short thank-you note to a neighbour who watered my plants.",
    "How can I keep my houseplants alive in winter?",
    "Give me three tips for a job interview.",
    "What is the difference between weather and climate?",
]


@dataclass(frozen=True)
class HooksBenchSpec:
    batch_sizes: tuple[int, ...] = (1, 32)
    new_tokens: int = 48
    repetitions: int = 11
    window: int = 8
    small_batch_factor: int = 3  # batch-1 runs are short and noisy: repeat them this many times more

    @classmethod
    def quick(cls) -> HooksBenchSpec:
        return cls(new_tokens=24, repetitions=5)


def window_layers(n_layers: int, size: int) -> list[int]:
    """A contiguous middle-to-late window: centred on 60% depth."""
    size = min(size, n_layers)
    start = max(0, min(n_layers - size, round(0.6 * n_layers) - size // 2))
    return list(range(start, start + size))


def _timed_generate(lm: LoadedModel, prompts: list[list[int]], plan: InterventionPlan, n_new: int) -> float:
    ids, mask = left_pad(prompts, pad_id(lm), lm.device)
    with lm.session(plan), torch.inference_mode():
        start = time.perf_counter()
        lm.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=n_new,
            min_new_tokens=n_new,  # fixed length: every config does the same work
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad_id(lm),
        )
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def paired_overheads(
    configs: dict[str, Callable[[], float]],
    baseline: str,
    repetitions: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median time per config and median per-repetition ratio to the baseline, minus one.

    Every repetition runs each config once, in an order rotated by one each time, so slow
    drift of the machine hits all configs alike and no config is always first.
    """
    names = list(configs)
    for name in names:  # warm-up round, not measured: the first runs of each config are slower
        configs[name]()
    times: dict[str, list[float]] = {k: [] for k in names}
    ratios: dict[str, list[float]] = {k: [] for k in names if k != baseline}
    for rep in range(repetitions):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        this = {name: configs[name]() for name in order}
        for name, t in this.items():
            times[name].append(t)
            if name != baseline:
                ratios[name].append(t / this[baseline] - 1)
        if progress:
            progress(f"repetition {rep + 1}/{repetitions}")
    medians = {k: statistics.median(v) for k, v in times.items()}
    return medians, {k: statistics.median(v) for k, v in ratios.items()}


def _bench_plans(
    lm: LoadedModel,
    plans: dict[str, InterventionPlan],
    spec: HooksBenchSpec,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Tokens/s per plan and overhead of each against "plain", for every batch size of `spec`."""
    chat = lm.chat
    base_prompts = [chat.prompt_ids([{"role": "user", "content": r}]) for r in BENCH_REQUESTS]
    result: dict[str, Any] = {
        "model": lm.name,
        "device": str(lm.device),
        "dtype": str(lm.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "new_tokens": spec.new_tokens,
    }
    for bsz in spec.batch_sizes:
        prompts = [base_prompts[i % len(base_prompts)] for i in range(bsz)]
        configs = {
            name: (lambda p=plan, ps=prompts: _timed_generate(lm, ps, p, spec.new_tokens))
            for name, plan in plans.items()
        }
        reps = spec.repetitions * (spec.small_batch_factor if bsz == 1 else 1)
        med, over = paired_overheads(
            configs, "plain", reps, progress and (lambda m, b=bsz: progress(f"batch {b}: {m}"))
        )
        result[f"repetitions_b{bsz}"] = reps
        for name, t in med.items():
            result[f"{name}_tok_s_b{bsz}"] = round(bsz * spec.new_tokens / t, 2)
        for name, o in over.items():
            result[f"{name}_overhead_b{bsz}"] = round(o, 4)
    return result


def bench_hooks(
    lm: LoadedModel, spec: HooksBenchSpec = HooksBenchSpec(), progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    layers = window_layers(lm.n_layers, spec.window)
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(lm.hidden_size, generator=gen)
    plans = {
        "plain": InterventionPlan(),
        "add": InterventionPlan([Add(layer, direction / direction.norm(), 0.5) for layer in layers]),
        # floor at 0 on a random direction clamps about half of all positions: real work every step
        "cap": InterventionPlan([Cap(layer, direction, floor=0.0) for layer in layers]),
    }
    return {"layers": layers, **_bench_plans(lm, plans, spec, progress)}


def bench_capping(
    lm: LoadedModel,
    spec: HooksBenchSpec = HooksBenchSpec(),
    space_dir: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Plain vs an 8-layer cap plan: calibrated at p25 from `space_dir`, else a random direction."""
    from .capping import calibrate

    layers = window_layers(lm.n_layers, spec.window)
    if space_dir is not None:
        from .space import PersonaSpace

        sp = PersonaSpace.load(space_dir)
        sp.check_model(lm)
        cap_plan = calibrate(sp, layers, 25.0).to_plan()
        source = f"p25 plan calibrated from {space_dir}"
    else:
        direction = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
        cap_plan = InterventionPlan([Cap(layer, direction, floor=0.0) for layer in layers])
        source = "random direction, floor 0"
    result = _bench_plans(lm, {"plain": InterventionPlan(), "cap8": cap_plan}, spec, progress)
    return {"layers": layers, "plan": source, **result}


def bench_load(name: str, cold_cache: str | None = None) -> dict[str, Any]:
    """Seconds to load `name`: first load in this process (conversion if the cache is cold) and a reload.

    The first in-process load also pays transformers' one-time lazy imports; the reload is what
    every later load costs once the process is warm.
    """
    from .modeling import load_model

    start = time.perf_counter()
    load_model(name, cache_dir=cold_cache)
    first = time.perf_counter() - start
    reloads = []
    for _ in range(3):
        start = time.perf_counter()
        load_model(name, cache_dir=cold_cache)
        reloads.append(time.perf_counter() - start)
    return {
        "model": name,
        "cold_cache": cold_cache is not None,
        "first_load_s": round(first, 3),
        "cached_load_s": round(statistics.median(reloads), 3),
        "speedup": round(first / statistics.median(reloads), 2),
    }


def bench_extraction(
    lm: LoadedModel,
    n_units: int = 64,
    batch_size: int = 32,
    max_new_tokens: int = 48,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Single-pass capture vs generate-then-re-forward on the same rollouts (same seeds, same text)."""
    from .catalog import load_catalog
    from .rollouts import RolloutSpec, generate_with_capture, make_chunks, plan_units, teacher_forced_from_ids

    catalog = load_catalog().subset(roles=max(1, n_units // 2), prompts=1, questions=2, traits=0, seed=0)
    units = plan_units(catalog, lm.name, include_traits=False)[:n_units]
    spec = RolloutSpec(max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=0.7, top_p=0.9)
    chunks = make_chunks(lm, units, batch_size)
    layers = list(range(lm.n_layers))

    from .generation import SamplingSpec, generate_batch

    sampling = SamplingSpec(max_new_tokens, spec.temperature, spec.top_p)
    single_s = two_s = 0.0
    single: list[torch.Tensor] = []
    second: list[torch.Tensor] = []
    same_text = 0
    for chunk in chunks:  # interleaved per chunk, so machine drift hits both paths alike
        start = time.perf_counter()
        tokens, _, acts, _ = generate_with_capture(lm, chunk.prompt_ids, spec, seed=chunk.index)
        single_s += time.perf_counter() - start
        single.append(acts)

        start = time.perf_counter()
        with lm.session(InterventionPlan()):
            tokens2, _ = generate_batch(lm, chunk.prompt_ids, sampling, seed=chunk.index)
        second.append(
            teacher_forced_from_ids(lm, list(zip(chunk.prompt_ids, tokens2, strict=True)), layers, batch_size)
        )
        two_s += time.perf_counter() - start
        same_text += sum(a == b for a, b in zip(tokens, tokens2, strict=True))
        if progress:
            progress(f"chunk {chunk.index + 1}/{len(chunks)}")
    a, b = torch.cat(single), torch.cat(second)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # (n, L)
    return {
        "model": lm.name,
        "device": str(lm.device),
        "n_rollouts": len(units),
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "single_pass_s": round(single_s, 2),
        "two_pass_s": round(two_s, 2),
        "speedup": round(two_s / single_s, 3),
        "min_cosine": round(float(cos.min()), 6),
        "identical_generations": f"{same_text}/{len(units)}",
        "min_cosine_by_layer": [round(float(c), 6) for c in cos.min(dim=0).values],
    }
