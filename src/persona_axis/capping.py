"""Activation capping: calibrated floors on the axis projection, stored with their provenance.

Percentile convention (the paper's "p25"): the floor at layer L is the value that p% of the
calibration population lies ABOVE on the axis, i.e. numpy's ``percentile(proj, 100 - p)``.
Worked example: projections [1, 2, 3, 4, 5, 6, 7, 8] and p = 25 -> floor = percentile(.., 75)
= 6.25; two of the eight responses (25%) sit above it, and capping lifts every token whose
projection falls below 6.25 back up to it. The reference project stores the negated axis and
a ceiling at its 25th percentile, which is the same cut.

The population is every per-response mean activation of a persona-space run: roles at every
judge score, both sides of every trait pair, and the default Assistant.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ArtifactError, InvalidPlanError
from .interventions import Cap, InterventionPlan, as_vector
from .space import PersonaSpace
from .store import atomic_write_json, read_json

FORMAT = "persona-axis.cap-plan/1"


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """'A:B' (B exclusive), 'A-B' (inclusive) or 'a,b,c' -> layer indices, validated."""
    try:
        if ":" in spec:
            a, b = spec.split(":")
            layers = list(range(int(a), int(b)))
        elif "-" in spec.strip("-"):
            a, b = spec.split("-")
            layers = list(range(int(a), int(b) + 1))
        else:
            layers = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise InvalidPlanError(f"layers {spec!r}: expected A:B, A-B or a,b,c") from None
    if not layers:
        raise InvalidPlanError(f"layers {spec!r}: selects no layer")
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise InvalidPlanError(f"layers {spec!r}: layer {bad[0]} is out of range 0..{n_layers - 1}")
    return layers


def space_id(space: PersonaSpace) -> str:
    return hashlib.sha256(space.axis.contiguous().numpy().tobytes()).hexdigest()[:16]


@dataclass
class CapPlan:
    """Floors on unit directions at a set of layers, with where they came from."""

    layers: list[int]
    directions: torch.Tensor  # (n, d) unit rows
    floors: list[float]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.floors) or self.directions.shape[0] != len(self.layers):
            raise InvalidPlanError("cap plan: layers, directions and floors differ in length")
        for layer, f in zip(self.layers, self.floors, strict=True):
            if not math.isfinite(f):
                raise InvalidPlanError(f"cap plan: floor at layer {layer} is not finite ({f})")
        self.directions = torch.stack([v / v.norm() for v in self.directions.float()])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[1])

    def to_plan(self) -> InterventionPlan:
        return InterventionPlan(
            Cap(layer, u, floor=f, name=f"cap.L{layer}")
            for layer, u, f in zip(self.layers, self.directions, self.floors, strict=True)
        )

    def check_model(self, lm: Any, force: bool = False) -> None:
        """Refuse a plan made for another model (hidden size always; fingerprint unless forced)."""
        if self.hidden_size != lm.hidden_size:
            raise ArtifactError(
                f"cap plan has vectors of size {self.hidden_size} but model {lm.name} has hidden size "
                f"{lm.hidden_size}: it was made for another model"
            )
        if max(self.layers) >= lm.n_layers:
            raise ArtifactError(f"cap plan uses layer {max(self.layers)} but {lm.name} has {lm.n_layers} layers")
        fp = self.provenance.get("model_fingerprint")
        if fp and fp != lm.fingerprint and not force:
            raise ArtifactError(
                f"cap plan was made for model fingerprint {fp} ({self.provenance.get('model_name')}), "
                f"not {lm.fingerprint} ({lm.name}); pass --force to use it anyway"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "layers": self.layers,
            "floors": self.floors,
            "directions": self.directions.tolist(),
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CapPlan:
        p = Path(path)
        data = read_json(p, ArtifactError, "cap plan")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError(f"{p}: not a persona-axis cap plan (format {data.get('format')!r})")
        try:
            dirs = torch.stack([as_vector(v, f"{p}: directions[{i}]") for i, v in enumerate(data["directions"])])
            return cls(
                list(map(int, data["layers"])), dirs, [float(f) for f in data["floors"]], data.get("provenance", {})
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{p}: malformed cap plan ({exc})") from None


def calibrate(space: PersonaSpace, layers: list[int], percentile: float) -> CapPlan:
    """Floors at the value `percentile`% of the calibration population lies above, per layer."""
    if not 0 < percentile < 100:
        raise InvalidPlanError(f"percentile {percentile} must be strictly between 0 and 100")
    pop = space.extras.get("population_projections")
    if pop is None:
        raise ArtifactError("this persona space has no calibration population (rebuild it with this version)")
    space_layers = space.meta.get("layers", list(range(space.n_layers)))
    bad = [x for x in layers if x not in space_layers]
    if bad:
        raise InvalidPlanError(f"layer {bad[0]} is not among the space's layers")
    idx = [space_layers.index(x) for x in layers]
    floors = [float(np.percentile(pop[:, i].double().numpy(), 100.0 - percentile)) for i in idx]
    provenance = {
        "space_id": space_id(space),
        "model_name": space.meta.get("model_name"),
        "model_fingerprint": space.meta.get("model_fingerprint"),
        "percentile": percentile,
        "convention": f"{percentile}% of the population lies above each floor",
        "population_size": int(pop.shape[0]),
        "layer_window": f"{min(layers)}:{max(layers) + 1}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return CapPlan(list(layers), torch.stack([space.unit_axis(i) for i in idx]), floors, provenance)


def population_projections(space: PersonaSpace, activations: torch.Tensor) -> torch.Tensor:
    """(N, L) projections of per-response mean activations (N, L, d) on each layer's unit axis."""
    units = space.axis / space.axis.norm(dim=-1, keepdim=True)
    return torch.einsum("nld,ld->nl", activations.float(), units)


def import_reference_config(path: str | Path) -> dict[str, CapPlan]:
    """Reference capping configs -> our plans, one per experiment id.

    The file holds {"vectors": {name: {"vector", "layer"}}, "experiments": [{"id",
    "interventions": [{"vector", "cap"}]}]}: ceilings on the normalised NEGATED axis. A ceiling
    c on v/|v| is a floor of -c on -v/|v|, which is how we store it. Loaded with
    torch.load(weights_only=True): a file that needs code execution is refused.
    """
    p = Path(path)
    try:
        cfg = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{p}: file not found") from None
    except Exception as exc:
        raise ArtifactError(f"{p}: refused: not loadable without executing code ({type(exc).__name__})") from None
    if (
        not isinstance(cfg, dict)
        or not isinstance(cfg.get("vectors"), dict)
        or not isinstance(cfg.get("experiments"), list)
    ):
        raise ArtifactError(f"{p}: expected a dict with 'vectors' (dict) and 'experiments' (list)")
    plans: dict[str, CapPlan] = {}
    for i, exp in enumerate(cfg["experiments"]):
        where = f"{p}: experiments[{i}]"
        if not isinstance(exp, dict) or "interventions" not in exp:
            raise ArtifactError(f"{where}: expected an object with 'interventions'")
        layers, dirs, floors = [], [], []
        for j, iv in enumerate(exp["interventions"]):
            name = iv.get("vector") if isinstance(iv, dict) else None
            spec = cfg["vectors"].get(name)
            if spec is None:
                raise ArtifactError(f"{where}.interventions[{j}]: unknown vector {name!r}")
            vec = as_vector(spec["vector"], f"{p}: vectors[{name!r}].vector")
            cap = float(iv["cap"])
            layers.append(int(spec["layer"]))
            dirs.append(-vec)
            floors.append(-cap)
        exp_id = str(exp.get("id", i))
        plans[exp_id] = CapPlan(
            layers,
            torch.stack(dirs),
            floors,
            {"imported_from": str(p), "experiment": exp_id, "convention": "reference ceiling c on v -> floor -c on -v"},
        )
    return plans
