"""The hook engine on tiny random-init models of every supported architecture."""

from __future__ import annotations

import threading

import pytest
import torch

from persona_axis.errors import InvalidPlanError, UnsupportedModelError
from persona_axis.generation import SamplingSpec, generate_tokens, left_pad
from persona_axis.interventions import Ablate, Add, Cap, Capture, InterventionPlan
from persona_axis.modeling import wrap_model
from tiny_models import ARCHITECTURES, EOS, tiny_model

PROMPTS = [
    [5, 6, 7],
    [8, 9, 10, 11, 12, 13],
    [20, 21],
    [30, 31, 32, 33],
    [40],
    [41, 42, 43, 44, 45, 46, 47],
    [50, 51],
    [60, 61, 62],
]


@pytest.fixture(params=ARCHITECTURES)
def lm(request):
    return wrap_model(tiny_model(request.param), name=request.param)


def _hook_counts(lm):
    return [len(b._forward_hooks) for b in lm.layout.blocks] + [len(lm.layout.root._forward_pre_hooks)]


def _hidden(lm, ids, mask=None):
    with torch.no_grad():
        return lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


class _Recorder:
    """A plain forward hook registered after the engine's, to see the block output it returns."""

    def __init__(self, block):
        self.out = None
        self.handle = block.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.out = (output[0] if isinstance(output, tuple) else output).detach().clone()


def test_layer_convention_matches_hidden_states(lm):
    ids = torch.randint(3, 100, (2, 9))
    hs = _hidden(lm, ids)
    assert len(hs) == lm.n_layers + 1
    response = torch.zeros(2, 9, dtype=torch.bool)
    response[:, 4:] = True
    plan = [Capture(layer, region="response") for layer in range(lm.n_layers)]
    with lm.session(plan) as s:
        s.set_response_mask(response)
        rec = _Recorder(lm.layout.blocks[-1])
        with torch.no_grad():
            lm.model(input_ids=ids)
        rec.handle.remove()
    caps = s.captures
    for layer in range(lm.n_layers - 1):
        expected = hs[layer + 1][:, 4:].float().mean(dim=1)
        torch.testing.assert_close(caps[f"L{layer}"].mean, expected, rtol=1e-5, atol=1e-5)
    # the last entry of HF hidden_states is after the final norm; ours is the raw block output
    torch.testing.assert_close(caps[f"L{lm.n_layers - 1}"].mean, rec.out[:, 4:].float().mean(dim=1))
    assert caps["L0"].count.tolist() == [5, 5]


def test_capture_under_kv_cache_and_left_padding_matches_teacher_forcing(lm):
    layer = lm.n_layers // 2
    out = generate_tokens(
        lm,
        PROMPTS[:4],
        SamplingSpec(max_new_tokens=6),
        InterventionPlan([Capture(layer, region="response"), Capture(layer, region="prompt", name="p")]),
    )
    caps = out.session.captures
    for i, prompt in enumerate(PROMPTS[:4]):
        fed = out.tokens[i]  # every response token, the last one included (fed by one extra cached step)
        seq = torch.tensor([prompt + fed])
        hs = _hidden(lm, seq)[layer + 1][0].float()
        if fed:
            torch.testing.assert_close(caps[f"L{layer}"].mean[i], hs[len(prompt) :].mean(0), rtol=1e-4, atol=1e-4)
        else:
            assert caps[f"L{layer}"].count[i] == 0
        assert int(caps[f"L{layer}"].count[i]) == len(fed)
        torch.testing.assert_close(caps["p"].mean[i], hs[: len(prompt)].mean(0), rtol=1e-4, atol=1e-4)


def test_tokens_after_end_of_turn_are_excluded(lm):
    # force an EOS early by adding a huge push toward the EOS logit direction is arch-specific;
    # instead feed a continuation containing EOS as decode steps by hand
    layer = 1
    prompt = torch.tensor([[5, 6, 7, 8]])
    with lm.session([Capture(layer, region="response")]) as s, torch.no_grad():
        out = lm.model(input_ids=prompt, attention_mask=torch.ones(1, 4, dtype=torch.long), use_cache=True)
        past = out.past_key_values
        mask = torch.ones(1, 4, dtype=torch.long)
        for tok in [9, 10, EOS, 11, 12]:
            mask = torch.cat([mask, torch.ones(1, 1, dtype=torch.long)], dim=1)
            out = lm.model(input_ids=torch.tensor([[tok]]), attention_mask=mask, past_key_values=past, use_cache=True)
            past = out.past_key_values
    hs = _hidden(lm, torch.tensor([[5, 6, 7, 8, 9, 10]]))[layer + 1][0].float()
    assert s.captures[f"L{layer}"].count.tolist() == [2]
    torch.testing.assert_close(s.captures[f"L{layer}"].mean[0], hs[4:6].mean(0), rtol=1e-4, atol=1e-4)


def test_add_cap_ablate_match_formulas(lm):
    layer = lm.n_layers // 2
    ids = torch.randint(3, 100, (2, 7))
    h = _hidden(lm, ids)[layer + 1].float() if layer < lm.n_layers - 1 else None
    torch.manual_seed(1)
    v = torch.randn(lm.hidden_size)
    u = v / v.norm()
    proj = h @ u
    tau = proj.median().item()
    cases = {
        "add": (Add(layer, v, coefficient=2.5), h + 2.5 * v),
        "floor": (Cap(layer, v, floor=tau), h - u * torch.clamp(proj - tau, max=0)[..., None]),
        "ceiling": (Cap(layer, v, ceiling=tau), h - u * torch.clamp(proj - tau, min=0)[..., None]),
        "ablate": (Ablate(layer, v), h - proj[..., None] * u),
    }
    for name, (op, expected) in cases.items():
        with lm.session([op]):
            rec = _Recorder(lm.layout.blocks[layer])
            with torch.no_grad():
                lm.model(input_ids=ids)
            rec.handle.remove()
        torch.testing.assert_close(rec.out.float(), expected, rtol=1e-5, atol=1e-5, msg=name)


def test_cap_leaves_tokens_above_floor_bit_identical_and_counts_changes(lm):
    layer = 1
    ids = torch.randint(3, 100, (2, 11))
    h = _hidden(lm, ids)[layer + 1]
    v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(3))
    u = v / v.norm()
    proj = h.float() @ u
    tau = proj.median().item()
    with lm.session([Cap(layer, v, floor=tau)]) as s:
        rec = _Recorder(lm.layout.blocks[layer])
        with torch.no_grad():
            lm.model(input_ids=ids)
        rec.handle.remove()
    above = proj >= tau
    assert torch.equal(rec.out[above], h[above])
    after = rec.out.float() @ u
    assert (after[~above] - tau).abs().max() < 1e-4
    assert s.cap_stats["L1"].changed == int((~above).sum())
    assert s.cap_stats["L1"].total == 22


def test_ops_have_no_effect_outside_the_context_and_hooks_are_removed(lm):
    ids = torch.randint(3, 100, (1, 6))
    base = _hidden(lm, ids)[-1]
    hooks = _hook_counts(lm)  # transformers keeps its own output-recording hooks
    with lm.session([Add(0, torch.ones(lm.hidden_size), 5.0)]):
        steered = _hidden(lm, ids)[-1]
    assert not torch.allclose(base, steered)
    assert torch.equal(_hidden(lm, ids)[-1], base)
    assert _hook_counts(lm) == hooks
    with pytest.raises(RuntimeError, match="boom"), lm.session([Add(0, torch.ones(lm.hidden_size), 5.0)]):
        raise RuntimeError("boom")
    assert _hook_counts(lm) == hooks
    assert torch.equal(_hidden(lm, ids)[-1], base)


def test_empty_plan_generation_equals_plain_generation(lm):
    ids, mask = left_pad(PROMPTS[:4], 0)
    with torch.no_grad():
        plain = lm.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=[EOS]
        )
    ours = generate_tokens(lm, PROMPTS[:4], SamplingSpec(max_new_tokens=6))
    for i, row in enumerate(plain[:, ids.shape[1] :].tolist()):
        cut = row[: row.index(EOS)] if EOS in row else row
        assert ours.tokens[i] == cut


def test_batch_of_one_and_batch_of_eight_agree(lm):
    layer = lm.n_layers - 2
    plan = InterventionPlan([Add(layer - 1, torch.linspace(-1, 1, lm.hidden_size), 0.5), Capture(layer, region="all")])
    batch = generate_tokens(lm, PROMPTS, SamplingSpec(max_new_tokens=5), plan)
    for i, prompt in enumerate(PROMPTS):
        single = generate_tokens(lm, [prompt], SamplingSpec(max_new_tokens=5), plan)
        assert single.tokens[0] == batch.tokens[i]
        torch.testing.assert_close(
            single.session.captures[f"L{layer}"].mean[0],
            batch.session.captures[f"L{layer}"].mean[i],
            rtol=1e-4,
            atol=1e-4,
        )


def test_threads_do_not_see_each_others_plans():
    lm = wrap_model(tiny_model("llama"))
    ids = torch.randint(3, 100, (1, 8))
    hooks = _hook_counts(lm)
    push = InterventionPlan([Add(1, torch.ones(lm.hidden_size), 3.0)])
    with torch.no_grad():
        ref_plain = lm.model(input_ids=ids).logits
        with lm.session(push):
            ref_push = lm.model(input_ids=ids).logits
    errors: list[str] = []
    barrier = threading.Barrier(2)

    def worker(plan, expected):
        barrier.wait()
        for _ in range(30):
            with lm.session(plan), torch.no_grad():
                got = lm.model(input_ids=ids).logits
            if not torch.allclose(got, expected, atol=1e-5):
                errors.append("mismatch")

    threads = [
        threading.Thread(target=worker, args=(push, ref_push)),
        threading.Thread(target=worker, args=(InterventionPlan(), ref_plain)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _hook_counts(lm) == hooks


def test_bfloat16_cap_projects_in_float32():
    lm = wrap_model(tiny_model("llama", seed=4).to(torch.bfloat16))
    ids = torch.randint(3, 100, (1, 12))
    v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    u = v / v.norm()
    h = _hidden(lm, ids)[2].float()
    tau = (h @ u).quantile(0.75).item()
    with lm.session([Cap(1, v, floor=tau)]):
        rec = _Recorder(lm.layout.blocks[1])
        with torch.no_grad():
            lm.model(input_ids=ids)
        rec.handle.remove()
    after = rec.out.float() @ u
    assert after.dtype == torch.float32 and rec.out.dtype == torch.bfloat16
    # bf16 storage rounds the corrected state; the projection is at the floor up to that rounding
    assert after.min() >= tau - 0.02 * max(1.0, abs(tau))


def test_plan_json_round_trip(tmp_path):
    v = torch.randn(32)
    plan = InterventionPlan(
        [
            Capture(1, directions=torch.randn(2, 32), name="m"),
            Add(0, v, -1.5, region="response"),
            Cap(2, v, floor=0.5),
            Ablate(3, v),
        ]
    )
    path = tmp_path / "plan.json"
    plan.save(path)
    back = InterventionPlan.load(path)
    assert [type(o) for o in back.ops] == [type(o) for o in plan.ops]
    torch.testing.assert_close(back.ops[1].vector, plan.ops[1].vector)
    assert back.ops[2].floor == 0.5 and back.ops[1].region == "response"


@pytest.mark.parametrize(
    "plan, match",
    [
        ([Add(7, torch.ones(32))], "layer 7 is out of range 0..3"),
        ([Add(1, torch.ones(31))], "size 31 does not match the model's hidden size 32"),
    ],
)
def test_plan_validation_errors_name_the_value(plan, match):
    lm = wrap_model(tiny_model("llama"))
    hooks = _hook_counts(lm)
    with pytest.raises(InvalidPlanError, match=match), lm.session(plan):
        pass
    assert _hook_counts(lm) == hooks


def test_nan_and_bad_plan_files_are_rejected(tmp_path):
    with pytest.raises(InvalidPlanError, match="non-finite value nan at index 2"):
        Add(0, [1.0, 2.0, float("nan")])
    bad = tmp_path / "bad.json"
    bad.write_text('{"ops": [{"op": "steer", "layer": 1}]}')
    with pytest.raises(InvalidPlanError, match="unknown op 'steer'"):
        InterventionPlan.load(bad)
    bad.write_text('{"ops": [{"op": "cap", "layer": 1, "direction": [1, 0]}]}')
    with pytest.raises(InvalidPlanError, match="give a floor, a ceiling or both"):
        InterventionPlan.load(bad)


def test_unsupported_model_names_class_and_override():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"hidden_size": 8, "num_hidden_layers": 3})()
            self.stack = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(2)])

    with pytest.raises(UnsupportedModelError, match="Odd.*blocks_path"):
        wrap_model(Odd())
    assert wrap_model(Odd(), blocks_path="stack").n_layers == 2
