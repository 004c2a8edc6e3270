"""Calibration, cap plans, reference import, and capping on the embedded model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from persona_axis.capping import CapPlan, calibrate, import_reference_config, parse_layers
from persona_axis.errors import ArtifactError, InvalidPlanError
from persona_axis.generation import SamplingSpec, generate_batch
from persona_axis.interventions import InterventionPlan
from persona_axis.modeling import wrap_model
from persona_axis.space import PersonaSpace
from persona_axis.steering import monitor
from tiny_models import tiny_model

WINDOW = list(range(16, 24))
HERMIT = "You are a hermit who has lived alone in a mountain cave for forty years, speaking in riddles."


def test_calibration_thresholds_equal_numpy_percentiles(smol_space_dir):
    space = PersonaSpace.load(smol_space_dir)
    pop = space.extras["population_projections"]
    assert pop.shape[0] == space.meta["n_rollouts"]  # every rollout: roles, traits, default
    for p in (1, 25, 50, 75):
        plan = calibrate(space, WINDOW, p)
        want = [np.percentile(pop[:, layer].numpy(), 100 - p) for layer in WINDOW]
        np.testing.assert_allclose(plan.floors, want, rtol=1e-6)
        above = [(pop[:, layer] > f).float().mean().item() for layer, f in zip(WINDOW, plan.floors, strict=True)]
        assert all(abs(a - p / 100) <= 2 / pop.shape[0] + 1e-9 for a in above)
    assert plan.provenance["population_size"] == pop.shape[0] and plan.provenance["layer_window"] == "16:24"


def test_worked_example_of_the_percentile_convention(smol_space_dir):
    space = PersonaSpace.load(smol_space_dir)
    space.extras["population_projections"] = torch.arange(1.0, 9.0)[:, None].expand(8, space.n_layers).clone()
    assert calibrate(space, [3], 25).floors == [pytest.approx(6.25)]


def _run(smol, space, plan, system=HERMIT, question="Tell me about yourself."):
    ids = smol.chat.prompt_ids([{"role": "system", "content": system}, {"role": "user", "content": question}])
    with smol.session(plan + monitor(space, WINDOW + [space.best_layer()])) as s:
        generate_batch(smol, [ids], SamplingSpec(max_new_tokens=24))
    return s


def test_capped_tokens_never_fall_below_the_floor(smol, smol_space_dir):
    space = PersonaSpace.load(smol_space_dir)
    cap_plan = calibrate(space, WINDOW, 10)  # a high floor, so the uncapped run dips below it
    capped = _run(smol, space, cap_plan.to_plan())
    plain = _run(smol, space, InterventionPlan())
    dipped = 0
    for layer, floor in zip(cap_plan.layers, cap_plan.floors, strict=True):
        proj = capped.captures[f"monitor.L{layer}"].projections[0][:, 0]
        assert proj.min() >= floor - 1e-3 * max(1.0, abs(floor))
        dipped += int((plain.captures[f"monitor.L{layer}"].projections[0][:, 0] < floor - 1e-3).sum())
    assert dipped > 0
    assert all(0 < capped.cap_stats[f"cap.L{layer}"].fraction <= 1 for layer in WINDOW[:1])


def test_p25_cap_raises_the_hermits_projection(smol, smol_space_dir):
    space = PersonaSpace.load(smol_space_dir)
    plan = calibrate(space, WINDOW, 25).to_plan()
    layer = WINDOW[-1]
    capped = _run(smol, space, plan).captures[f"monitor.L{layer}"].projections[0].mean()
    plain = _run(smol, space, InterventionPlan()).captures[f"monitor.L{layer}"].projections[0].mean()
    assert capped > plain


def test_plan_round_trip_and_refusal_for_another_model(tmp_path, smol, smol_space_dir):
    space = PersonaSpace.load(smol_space_dir)
    plan = calibrate(space, WINDOW, 25)
    plan.save(tmp_path / "p.json")
    back = CapPlan.load(tmp_path / "p.json")
    assert back.layers == plan.layers and back.floors == pytest.approx(plan.floors)
    back.check_model(smol)
    other = wrap_model(tiny_model("llama"))
    with pytest.raises(ArtifactError, match="vectors of size 576 but model .* hidden size 32"):
        back.check_model(other)
    back.provenance["model_fingerprint"] = "0000"
    with pytest.raises(ArtifactError, match="fingerprint 0000"):
        back.check_model(smol)
    back.check_model(smol, force=True)


def test_parse_layers():
    assert parse_layers("16:24", 30) == WINDOW
    assert parse_layers("16-23", 30) == WINDOW
    assert parse_layers("3,5", 30) == [3, 5]
    with pytest.raises(InvalidPlanError, match="layer 30 is out of range 0..29"):
        parse_layers("28:32", 30)


def test_reference_config_import_matches_the_reference_formula(tmp_path):
    lm = wrap_model(tiny_model("llama"))
    g = torch.Generator().manual_seed(0)
    v1, v2 = torch.randn(32, generator=g) * 3, torch.randn(32, generator=g)
    cfg = {
        "vectors": {"neg_axis_L1": {"vector": v1, "layer": 1}, "neg_axis_L2": {"vector": v2, "layer": 2}},
        "experiments": [
            {
                "id": "layers_1:3-p0.25",
                "interventions": [{"vector": "neg_axis_L1", "cap": 0.2}, {"vector": "neg_axis_L2", "cap": -0.1}],
            }
        ],
    }
    path = tmp_path / "capping_config.pt"
    torch.save(cfg, path)
    plans = import_reference_config(path)
    plan = plans["layers_1:3-p0.25"]
    assert plan.layers == [1, 2] and plan.floors == [-0.2, 0.1]
    ids = torch.randint(3, 100, (2, 9))
    outs = {}
    hooks = []
    for layer in (1, 2):
        hooks.append(
            lm.layout.blocks[layer].register_forward_hook(
                lambda m, a, o, L=layer: outs.__setitem__(L, (o[0] if isinstance(o, tuple) else o).clone())
            )
        )
    with torch.no_grad():
        with lm.session(plan.to_plan()):
            lm.model(input_ids=ids)
        ours = dict(outs)
        # the reference formula, applied by hand layer by layer on an unmodified model
        ref_hooks = []
        for layer, v, c in ((1, v1, 0.2), (2, v2, -0.1)):
            vn = v / (v.norm() + 1e-8)

            def cap_hook(m, a, o, vn=vn, c=c):
                h = o[0] if isinstance(o, tuple) else o
                excess = (h @ vn - c).clamp(min=0.0)
                h = h - excess[..., None] * vn
                return (h, *o[1:]) if isinstance(o, tuple) else h

            ref_hooks.append(lm.layout.blocks[layer].register_forward_hook(cap_hook, prepend=True))
        lm.model(input_ids=ids)
    for h in hooks + ref_hooks:
        h.remove()
    for layer in (1, 2):
        torch.testing.assert_close(ours[layer], outs[layer], rtol=1e-5, atol=1e-5)


class Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pwned')",))


def test_reference_config_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"vectors": {}, "experiments": [Evil()]}, fh)
    with pytest.raises(ArtifactError, match="refused"):
        import_reference_config(path)
