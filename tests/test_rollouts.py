"""Rollouts on the embedded model: single-pass capture equals a separate teacher-forced pass."""

from __future__ import annotations

import torch

from persona_axis.catalog import load_catalog
from persona_axis.rollouts import (
    RolloutSpec,
    RolloutStore,
    generate_with_capture,
    make_chunks,
    plan_units,
    run_rollouts,
    teacher_forced_activations,
)


def _units(smol, n=10):
    cat = load_catalog().subset(roles=5, prompts=1, questions=2, traits=1, trait_pairs=1, seed=3)
    return plan_units(cat, smol.name)[:n]


def test_single_pass_capture_equals_teacher_forcing(smol):
    units = _units(smol)
    chunk = make_chunks(smol, units, batch_size=len(units))[0]
    spec = RolloutSpec(max_new_tokens=20, temperature=0.7, top_p=0.9)
    tokens, finished, acts, counts = generate_with_capture(smol, chunk.prompt_ids, spec, seed=1)
    assert acts.shape == (len(units), smol.n_layers, smol.hidden_size)
    assert counts.tolist() == [len(t) for t in tokens]  # every content token, none after end-of-turn
    convs = [
        [*u.messages(), {"role": "assistant", "content": smol.tokenizer.decode(t, skip_special_tokens=True)}]
        for u, t in zip(chunk.units, tokens, strict=True)
    ]
    ref = teacher_forced_activations(smol, convs, list(range(smol.n_layers)))
    cos = torch.nn.functional.cosine_similarity(acts, ref, dim=-1)
    assert cos.min() >= 0.999, cos.min(dim=0)


def test_chunks_are_deterministic_and_shards_partition_the_work(smol, tmp_path):
    units = _units(smol, n=12)
    spec = RolloutSpec(max_new_tokens=6, batch_size=4, seed=5)
    full = tmp_path / "full"
    run_rollouts(smol, units, spec, full)
    split = tmp_path / "split"
    r0 = run_rollouts(smol, units, spec, split, shard=(0, 2))
    r1 = run_rollouts(smol, units, spec, split, shard=(1, 2))
    assert r0["chunks_generated"] + r1["chunks_generated"] == r0["chunks"] == 3
    a_rec, a_act = RolloutStore(full).load()
    b_rec, b_act = RolloutStore(split).load()
    assert a_rec == b_rec and torch.equal(a_act, b_act)
    assert sorted(r["uid"] for r in a_rec) == sorted(u.uid for u in units)
    again = run_rollouts(smol, units, spec, full)
    assert again["chunks_generated"] == 0  # finished chunks are skipped
