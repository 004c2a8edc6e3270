"""Steering in units of the residual norm, on the embedded model."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from persona_axis import cli
from persona_axis.errors import InvalidPlanError
from persona_axis.generation import SamplingSpec, generate_batch
from persona_axis.space import PersonaSpace
from persona_axis.steering import monitor, steer

PROMPTS = ["Who are you?", "What do you do all day?", "Describe your ideal evening."]


def test_residual_norms_are_stored_per_layer(smol_space_dir):
    norms = PersonaSpace.load(smol_space_dir).extras["residual_norms"]
    assert norms.shape == (30,) and (norms > 0).all()


def test_steering_shifts_the_projection_monotonically(smol, smol_space_dir):
    space = PersonaSpace.load(smol_space_dir)
    layer = space.best_layer()
    watch = min(layer + 1, space.n_layers - 1)
    means = []
    for m in (-0.5, -0.25, 0.0, 0.25, 0.5):
        plan = steer(space, layer, multiplier=m) + monitor(space, [watch])
        ids = [smol.chat.prompt_ids([{"role": "user", "content": p}]) for p in PROMPTS]
        with smol.session(plan) as s:
            generate_batch(smol, ids, SamplingSpec(max_new_tokens=16))
        means.append(float(torch.cat(s.captures[f"monitor.L{watch}"].projections).mean()))
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means


def test_steer_units(smol_space_dir):
    space = PersonaSpace.load(smol_space_dir)
    plan = steer(space, 5, multiplier=0.5)
    assert plan.ops[0].coefficient == pytest.approx(0.5 * float(space.extras["residual_norms"][5]))
    assert steer(space, 5, coefficient=3.0).ops[0].coefficient == 3.0
    with pytest.raises(InvalidPlanError, match="exactly one"):
        steer(space, 5)


def test_chat_json_reports_telemetry(monkeypatch, capsys, smol_space_dir, tmp_path):
    plan = tmp_path / "p25.json"
    monkeypatch.setattr(
        sys,
        "argv",
        ["persona-axis", "cap", "calibrate", "--space", str(smol_space_dir), "--layers", "16:24", "--out", str(plan)],
    )
    cli.main()
    capsys.readouterr()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "persona-axis",
            "chat",
            "--space",
            str(smol_space_dir),
            "--cap",
            str(plan),
            "--steer",
            "0.25",
            "--layer",
            "18",
            "-p",
            "Who are you?",
            "--max-new-tokens",
            "8",
            "--json",
        ],
    )
    cli.main()
    data = json.loads(capsys.readouterr().out)
    assert data["text"]
    tel = data["telemetry"]
    assert {"L16", "L18", "L23"} <= set(tel)
    assert tel["L16"]["min_projection"] >= tel["L16"]["floor"] - 1e-3
    assert 0 <= tel["L16"]["capped_fraction"] <= 1
    assert 0 < tel["L16"]["tokens"] <= 8
