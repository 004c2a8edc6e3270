"""Steering along the axis in understandable units, and the residual norms that define them.

Strength is a multiple of the mean per-token residual norm at the chosen layer, measured on
the model's own replies to ordinary chat requests (response tokens only: the role headers
and the first token of a sequence often carry outlier norms). Positive = toward the Assistant.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from .errors import InvalidPlanError, PersonaAxisError
from .generation import SamplingSpec, generate_batch
from .interventions import Add, Capture, InterventionPlan, Region
from .modeling import LoadedModel
from .space import PersonaSpace


def chat_requests(path: str | Path | None = None) -> list[str]:
    """Our packaged everyday requests (>= 100), or a JSONL file of {"request": ...} lines."""
    p = Path(path) if path else Path(str(resources.files("persona_axis") / "data" / "chat_requests.jsonl"))
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(str(json.loads(line)["request"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise PersonaAxisError(f"{p}:{n}: expected a JSON object with a 'request' field") from None
    if not out:
        raise PersonaAxisError(f"{p}: no requests")
    return out


def measure_residual_norms(
    lm: LoadedModel,
    requests: Sequence[str] | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 32,
) -> torch.Tensor:
    """(n_layers,) mean per-token residual norm over the model's greedy replies to `requests`."""
    requests = list(requests) if requests is not None else chat_requests()
    plan = InterventionPlan([Capture(layer, region="response", norms=True) for layer in range(lm.n_layers)])
    prompts = sorted((lm.chat.prompt_ids([{"role": "user", "content": r}]) for r in requests), key=len)
    with lm.session(plan) as session:
        for i in range(0, len(prompts), batch_size):
            generate_batch(lm, prompts[i : i + batch_size], SamplingSpec(max_new_tokens=max_new_tokens))
    caps = session.captures
    out = []
    for layer in range(lm.n_layers):
        c = caps[f"L{layer}"]
        w = c.count.float()
        ok = w > 0
        out.append(float((c.norm_mean[ok] * w[ok]).sum() / w[ok].sum()))
    return torch.tensor(out)


def steering_coefficient(space: PersonaSpace, layer: int, multiplier: float) -> float:
    norms = space.extras.get("residual_norms")
    if norms is None:
        raise PersonaAxisError(
            "this persona space has no residual norm statistics; give a raw coefficient instead "
            "or add them with `persona-axis space norms`"
        )
    return float(multiplier) * float(norms[layer])


def steer(
    space: PersonaSpace,
    layer: int,
    multiplier: float | None = None,
    coefficient: float | None = None,
    region: Region = "all",
) -> InterventionPlan:
    """Add c * u at `layer` (u = unit axis), c = multiplier x mean residual norm, or a raw c."""
    if (multiplier is None) == (coefficient is None):
        raise InvalidPlanError("steer: give exactly one of multiplier or coefficient")
    if not 0 <= layer < space.n_layers:
        raise InvalidPlanError(f"steer: layer {layer} is out of range 0..{space.n_layers - 1}")
    c = coefficient if coefficient is not None else steering_coefficient(space, layer, multiplier)
    return InterventionPlan([Add(layer, space.unit_axis(layer), float(c), region=region)])


def monitor(space: PersonaSpace, layers: Sequence[int], region: Region = "response") -> InterventionPlan:
    """Per-token projections on the unit axis at `layers` (place after other ops to see their effect)."""
    return InterventionPlan(
        [Capture(layer, region=region, directions=space.unit_axis(layer), name=f"monitor.L{layer}") for layer in layers]
    )


def add_residual_norms(space: PersonaSpace, lm: LoadedModel, directory: str | Path, **kw) -> PersonaSpace:
    """Measure the norms for `lm` and save them into the space at `directory`."""
    space.check_model(lm)
    space.extras["residual_norms"] = measure_residual_norms(lm, **kw)
    space.meta["residual_norms"] = {"requests": "packaged chat_requests.jsonl", "region": "response tokens"}
    space.save(directory)
    return space
