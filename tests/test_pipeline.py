"""`persona-axis run` end to end on the embedded model with small sizes; resume; refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from persona_axis.errors import ArtifactError, CatalogError
from persona_axis.pipeline import Run, demo_config
from persona_axis.rollouts import RolloutSpec
from persona_axis.space import PersonaSpace

SMALL = dict(roles=6, prompts=1, questions=3, traits=2, max_new_tokens=10)


def small_config(**kw):
    cfg = demo_config(**SMALL)
    cfg = replace(cfg, rollout=replace(cfg.rollout, batch_size=8), vectors=replace(cfg.vectors, min_role_count=1))
    return replace(cfg, **kw)


def _numbers(summary):
    return {k: v for k, v in summary.items() if k != "timings_s"}


def test_small_run_writes_every_artifact(tmp_path):
    summary = Run(tmp_path, small_config()).execute()
    for name in (
        "manifest.json",
        "scores.json",
        "summary.json",
        "report.html",
        "space/space.safetensors",
        "figures/pca3d.png",
        "figures/cos_by_layer.png",
    ):
        assert (tmp_path / name).is_file(), name
    keys = {
        "model",
        "n_layers",
        "n_roles",
        "n_rollouts",
        "best_layer",
        "cos_axis_pc1",
        "default_pc1_position",
        "dims_for_70pct",
        "assistant_end_roles",
        "far_end_roles",
        "judge",
        "timings_s",
    }
    assert keys <= set(summary)
    assert summary["n_layers"] == 30 and len(summary["cos_axis_pc1"]) == 30
    assert summary["n_rollouts"] == 6 * 3 + 5 * 3 + 2 * 2 * 2 * 3
    assert all(0 <= d <= 0.5 for d in summary["default_pc1_position"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model_fingerprint"] and manifest["catalog_hash"] and manifest["versions"]["torch"]
    html = (tmp_path / "report.html").read_text()
    assert "plotly" in html.lower() and "Approximate judge" in html
    space = PersonaSpace.load(tmp_path / "space")
    assert space.meta["model_fingerprint"] == manifest["model_fingerprint"]
    # a rerun does nothing new and gives the same numbers
    again = Run(tmp_path, small_config()).execute()
    assert _numbers(again) == _numbers(summary)


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    Run(tmp_path, small_config()).ensure_manifest()
    other = small_config(rollout=RolloutSpec(max_new_tokens=11, batch_size=8))
    with pytest.raises(ArtifactError, match="other settings \\(rollout\\)"):
        Run(tmp_path, other).ensure_manifest()


def test_bad_catalog_writes_nothing(tmp_path):
    bad = tmp_path / "cat"
    (bad / "roles").mkdir(parents=True)
    (bad / "roles" / "r.json").write_text("[{]")
    out = tmp_path / "out"
    with pytest.raises(CatalogError, match="r.json: not valid JSON"):
        Run(out, small_config(catalog=str(bad)))
    with pytest.raises(CatalogError, match="unknown role 'wizard-king'"):
        Run(out, small_config(roles=["analyst", "wizard-king"]))
    assert not out.exists()


def _cli(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "persona_axis",
        "demo",
        "--out",
        str(out),
        "--roles",
        "6",
        "--prompts",
        "1",
        "--questions",
        "3",
        "--traits",
        "2",
        "--max-new-tokens",
        "10",
    ]


def test_kill_9_then_resume_gives_identical_results(tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(_cli(ref), check=True, capture_output=True, timeout=600)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for delay in (9.0, 14.0):
        proc = subprocess.Popen(_cli(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(_cli(out), check=True, capture_output=True, timeout=600)
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert _numbers(a) == _numbers(b)
    ra = sorted((ref / "rollouts").glob("*.jsonl"))
    assert [p.read_text() for p in ra] == [(out / "rollouts" / p.name).read_text() for p in ra]
    assert (ref / "space" / "space.safetensors").read_bytes() == (out / "space" / "space.safetensors").read_bytes()
