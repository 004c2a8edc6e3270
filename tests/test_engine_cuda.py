"""The engine on CUDA in bfloat16 (runs where a GPU is present; skipped on CPU-only machines)."""

from __future__ import annotations

import pytest
import torch

from persona_axis.generation import SamplingSpec, generate_tokens
from persona_axis.interventions import Cap, Capture, InterventionPlan
from persona_axis.modeling import wrap_model
from tiny_models import ARCHITECTURES, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bf16_cuda_capture_and_cap_match_cpu(arch):
    import copy

    cpu = wrap_model(tiny_model(arch))
    gpu = wrap_model(copy.deepcopy(tiny_model(arch)).to("cuda", torch.bfloat16))
    u = torch.randn(cpu.hidden_size, generator=torch.Generator().manual_seed(0))
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]
    plan = InterventionPlan([Capture(1, region="prompt", directions=u)])
    c = generate_tokens(cpu, prompts, SamplingSpec(max_new_tokens=1), plan).session.captures["L1"]
    g = generate_tokens(gpu, prompts, SamplingSpec(max_new_tokens=1), plan).session.captures["L1"]
    assert g.mean.dtype == torch.float32 and g.mean.device.type == "cpu"
    cos = torch.nn.functional.cosine_similarity(c.mean, g.mean, dim=-1)
    assert cos.min() > 0.98
    floor = float(torch.cat(c.projections).median())
    capped = InterventionPlan([Cap(1, u, floor=floor), Capture(1, region="all", directions=u)])
    res = generate_tokens(gpu, prompts, SamplingSpec(max_new_tokens=4), capped).session
    proj = torch.cat(res.captures["L1"].projections)
    assert proj.min() >= floor - 0.02 * max(1.0, abs(floor))
    assert res.cap_stats["L1"].changed > 0
