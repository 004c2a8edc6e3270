"""Rollouts: generate role / default / trait responses and capture their mean activations
in the same forward passes (no second pass), stored as resumable chunks.

A chunk is one length-bucketed batch. It is committed by writing its safetensors file and
then its JSONL records, each atomically; a chunk whose records file exists is done. Chunk ids
and per-chunk seeds depend only on the work list, so a killed run resumes to identical
artifacts and `--shard i/n` processes can share one run directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .catalog import Catalog
from .errors import ArtifactError, PersonaAxisError
from .generation import SamplingSpec, generate_batch, left_pad, pad_id
from .interventions import Capture, InterventionPlan
from .modeling import LoadedModel
from .store import atomic_write_bytes, atomic_write_text


@dataclass(frozen=True)
class RolloutUnit:
    kind: str  # "role" | "default" | "trait_pos" | "trait_neg"
    entity: str  # role name, "default", or trait name
    prompt_index: int
    question_id: int
    system: str | None
    question: str

    @property
    def uid(self) -> str:
        return f"{self.kind}:{self.entity}:{self.prompt_index}:{self.question_id}"

    def messages(self) -> list[dict[str, str]]:
        msgs = [] if self.system is None else [{"role": "system", "content": self.system}]
        return [*msgs, {"role": "user", "content": self.question}]


@dataclass(frozen=True)
class RolloutSpec:
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 32
    layers: tuple[int, ...] | None = None  # None = every layer
    activation_dtype: str = "float32"  # storage dtype: float32 or bfloat16

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise PersonaAxisError("max_new_tokens and batch_size must be >= 1")
        if not 0 <= self.temperature <= 5 or not 0 < self.top_p <= 1:
            raise PersonaAxisError(f"temperature {self.temperature} / top_p {self.top_p} out of range")
        if self.activation_dtype not in ("float32", "bfloat16"):
            raise PersonaAxisError(f"activation_dtype {self.activation_dtype!r} is not float32 or bfloat16")


def plan_units(catalog: Catalog, model_name: str, include_traits: bool = True) -> list[RolloutUnit]:
    """Every (system prompt, question) pair of the catalog, roles first."""
    units: list[RolloutUnit] = []
    for role in catalog.roles:
        for i, prompt in enumerate(role.prompts):
            units += [RolloutUnit("role", role.name, i, q.id, prompt, q.text) for q in catalog.questions]
    for i, prompt in enumerate(catalog.defaults_for(model_name)):
        units += [RolloutUnit("default", "default", i, q.id, prompt, q.text) for q in catalog.questions]
    if include_traits:
        for trait in catalog.traits:
            for i, (pos, neg) in enumerate(trait.pairs):
                for q in catalog.questions:
                    units.append(RolloutUnit("trait_pos", trait.name, i, q.id, pos, q.text))
                    units.append(RolloutUnit("trait_neg", trait.name, i, q.id, neg, q.text))
    return units


@dataclass(frozen=True)
class Chunk:
    index: int
    units: tuple[RolloutUnit, ...]
    prompt_ids: tuple[tuple[int, ...], ...]


def make_chunks(lm: LoadedModel, units: Sequence[RolloutUnit], batch_size: int) -> list[Chunk]:
    """Length-bucketed batches: sort by prompt length so a batch pads little."""
    encoded = [(u, tuple(lm.chat.prompt_ids(u.messages()))) for u in units]
    encoded.sort(key=lambda e: (len(e[1]), e[0].uid))
    return [
        Chunk(
            i // batch_size,
            tuple(e[0] for e in encoded[i : i + batch_size]),
            tuple(e[1] for e in encoded[i : i + batch_size]),
        )
        for i in range(0, len(encoded), batch_size)
    ]


def generate_with_capture(
    lm: LoadedModel, prompts: Sequence[Sequence[int]], spec: RolloutSpec, seed: int
) -> tuple[list[list[int]], list[bool], torch.Tensor, torch.Tensor]:
    """(tokens, finished, activations (B, L, d) float32, counts (B,)) for one batch.

    The mean covers exactly the response content tokens: every generated token before the
    stop token (see generation.generate_batch for the last token).
    """
    layers = list(spec.layers) if spec.layers is not None else list(range(lm.n_layers))
    plan = InterventionPlan([Capture(layer, region="response") for layer in layers])
    sampling = SamplingSpec(spec.max_new_tokens, spec.temperature, spec.top_p)
    with lm.session(plan) as session:
        tokens, finished = generate_batch(lm, prompts, sampling, seed=seed)
    caps = session.captures
    acts = torch.stack([caps[f"L{layer}"].mean for layer in layers], dim=1)
    counts = caps[f"L{layers[0]}"].count
    return tokens, finished, acts, counts


class RolloutStore:
    """The ``rollouts/`` folder of a run: one (safetensors, jsonl) pair per chunk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "rollouts"

    def _paths(self, index: int) -> tuple[Path, Path]:
        return self.root / f"chunk-{index:06d}.safetensors", self.root / f"chunk-{index:06d}.jsonl"

    def done(self, index: int) -> bool:
        return self._paths(index)[1].is_file()

    def write(self, index: int, records: list[dict[str, Any]], activations: torch.Tensor) -> None:
        tensors, jsonl = self._paths(index)
        self.root.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save

        atomic_write_bytes(tensors, save({"activations": activations.contiguous()}))
        atomic_write_text(jsonl, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def chunk_indices(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.root.glob("chunk-*.jsonl"))

    def load(self) -> tuple[list[dict[str, Any]], torch.Tensor]:
        """All records (in chunk order) and their activations (n, L, d) float32."""
        records: list[dict[str, Any]] = []
        acts: list[torch.Tensor] = []
        for index in self.chunk_indices():
            tensors, jsonl = self._paths(index)
            try:
                rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
                a = load_file(str(tensors))["activations"].float()
            except (OSError, json.JSONDecodeError, Exception) as exc:  # safetensors raises its own error type
                raise ArtifactError(f"{jsonl}: unreadable rollout chunk ({exc}); delete it to regenerate") from None
            if a.shape[0] != len(rows):
                raise ArtifactError(f"{tensors}: {a.shape[0]} activations for {len(rows)} records")
            records += rows
            acts.append(a)
        if not acts:
            raise ArtifactError(f"{self.root}: no rollouts")
        return records, torch.cat(acts)


@dataclass
class RolloutProgress:
    done: int
    total: int
    elapsed_s: float
    tokens: int

    @property
    def eta_s(self) -> float | None:
        return self.elapsed_s / self.done * (self.total - self.done) if self.done else None


def run_rollouts(
    lm: LoadedModel,
    units: Sequence[RolloutUnit],
    spec: RolloutSpec,
    run_dir: Path,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[RolloutProgress], None] | None = None,
    chunks: Sequence[Chunk] | None = None,
) -> dict[str, Any]:
    """Generate every chunk of this shard that is not done yet. Returns counts for the summary.

    Pass `chunks` (from make_chunks over the same units) when the caller already made them.
    """
    store = RolloutStore(run_dir)
    if chunks is None:
        chunks = make_chunks(lm, units, spec.batch_size)
    mine = [c for c in chunks if c.index % shard[1] == shard[0]]
    todo = [c for c in mine if not store.done(c.index)]
    start = time.perf_counter()
    tokens_total = 0
    storage = torch.bfloat16 if spec.activation_dtype == "bfloat16" else torch.float32
    for n, chunk in enumerate(todo):
        seed = spec.seed * 1_000_003 + chunk.index
        tokens, finished, acts, counts = generate_with_capture(lm, chunk.prompt_ids, spec, seed)
        records = []
        for unit, toks, fin, cnt in zip(chunk.units, tokens, finished, counts.tolist(), strict=True):
            text = lm.tokenizer.decode(toks, skip_special_tokens=True)
            records.append(asdict(unit) | {"uid": unit.uid, "response": text, "n_tokens": cnt, "finished": fin})
            tokens_total += len(toks)
        store.write(chunk.index, records, acts.to(storage))
        if progress:
            progress(RolloutProgress(n + 1, len(todo), time.perf_counter() - start, tokens_total))
    return {
        "chunks": len(chunks),
        "chunks_this_shard": len(mine),
        "chunks_generated": len(todo),
        "units": len(units),
        "tokens_generated": tokens_total,
        "seconds": round(time.perf_counter() - start, 2),
    }


def teacher_forced_activations(
    lm: LoadedModel, conversations: Sequence[Sequence[dict[str, str]]], layers: Sequence[int], batch_size: int = 16
) -> torch.Tensor:
    """Mean activation of each conversation's last assistant message, by a separate forward pass.

    This is how a generate-then-re-forward pipeline extracts activations (text re-rendered with
    the chat template and re-tokenised); we use it to check the single-pass path.
    """
    pairs = []
    for conv in conversations:
        enc = lm.chat.encode(conv)
        a, z = enc.assistant_spans[-1]
        pairs.append((enc.input_ids[:a], enc.input_ids[a:z]))
    return teacher_forced_from_ids(lm, pairs, layers, batch_size)


def teacher_forced_from_ids(
    lm: LoadedModel, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], layers: Sequence[int], batch_size: int = 16
) -> torch.Tensor:
    """(n, L, d): mean activation over the response ids of each (prompt ids, response ids) pair."""
    out = []
    plan = InterventionPlan([Capture(layer, region="response") for layer in layers])
    for i in range(0, len(pairs), batch_size):
        batch = pairs[i : i + batch_size]
        ids, mask = left_pad([list(p) + list(r) for p, r in batch], pad_id(lm), lm.device)
        width = ids.shape[1]
        response = torch.zeros_like(ids, dtype=torch.bool)
        for b, (_prompt, r) in enumerate(batch):
            start = width - len(r)
            response[b, start:width] = True
        with lm.session(plan) as s, torch.inference_mode():
            s.set_response_mask(response)
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            lm.model(input_ids=ids, attention_mask=mask, position_ids=positions)
        caps = s.captures
        out.append(torch.stack([caps[f"L{layer}"].mean for layer in layers], dim=1))
    return torch.cat(out)
