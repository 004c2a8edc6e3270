"""CLI: bad input is a one-line error naming the value, exit code 2."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from persona_axis import cli
from persona_axis.interventions import Add, InterventionPlan
from test_modeling import _tiny_dir


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["persona-axis", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_doctor_json(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "doctor", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["torch"] == torch.__version__
    assert data["embedded_models"]["smollm2-135m-instruct"]["installed"] is True


def test_unknown_model_exit_2(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "generate", "-p", "hi", "--model", "gpt-17")
    assert code == 2
    assert "unknown model 'gpt-17'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "ops, match",
    [
        ([Add(99, torch.ones(576))], "layer 99 is out of range 0..29"),
        ([Add(3, torch.ones(12))], "size 12 does not match the model's hidden size 576"),
    ],
)
def test_plan_that_does_not_fit_exit_2(monkeypatch, capsys, tmp_path, ops, match, smol_dir):
    plan = tmp_path / "plan.json"
    InterventionPlan(ops).save(plan)
    code, _, err = run_cli(monkeypatch, capsys, "generate", "-p", "hi", "--plan", str(plan))
    assert code == 2 and match in err


def test_nan_in_plan_file_exit_2(monkeypatch, capsys, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"ops": [{"op": "add", "layer": 1, "vector": [1.0, float("nan"), 0.0]}]}))
    code, _, err = run_cli(monkeypatch, capsys, "generate", "-p", "hi", "--plan", str(plan))
    assert code == 2 and "non-finite value nan at index 1" in err and str(plan) in err


def test_template_that_cannot_render_exit_2(monkeypatch, capsys, tmp_path, smol_tokenizer):
    broken = "{{ raise_exception('this template refuses everything') }}"
    d = _tiny_dir(tmp_path, smol_tokenizer, template=broken)
    code, _, err = run_cli(monkeypatch, capsys, "generate", "-p", "hi", "--model", str(d))
    assert code == 2 and "this template refuses everything" in err


def test_generate_json_reports_cap_stats(monkeypatch, capsys, tmp_path, smol_dir):
    from persona_axis.interventions import Cap, Capture

    u = torch.randn(576, generator=torch.Generator().manual_seed(0))
    plan = tmp_path / "plan.json"
    InterventionPlan([Cap(20, u, floor=1e6), Capture(20, directions=u)]).save(plan)
    code, out, _ = run_cli(
        monkeypatch, capsys, "generate", "-p", "Say hi", "--plan", str(plan), "--max-new-tokens", "5", "--json"
    )
    data = json.loads(out)
    assert code == 0
    assert data["cap_stats"]["L20"]["fraction"] == 1.0  # an unreachable floor clamps every position
    assert data["captures"]["L20"]["projections_mean"][0] == pytest.approx(1e6, rel=1e-3)
