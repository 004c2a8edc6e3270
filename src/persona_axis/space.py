"""Persona space: role / default / trait vectors, the Assistant Axis, PCA per layer, rankings.

All statistics are float32. Axis = default vector - mean of role vectors (each role weighted
equally), raw (not normalised), pointing toward the Assistant. PCA is over the role vectors,
mean-centred, no scaling; each PC's sign is aligned so that it correlates positively with the
axis (a PC's sign is otherwise arbitrary).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from .errors import ArtifactError
from .store import atomic_write_bytes, atomic_write_json

FORMAT = "persona-axis.space/1"


@dataclass(frozen=True)
class VectorSettings:
    min_role_count: int = 10  # score-3 responses needed to keep a role (paper 10, reference 50)
    trait_min_gap: int = 50  # keep trait pairs whose judged scores differ by at least this
    n_components: int = 10


@dataclass
class Vectors:
    role_names: list[str]
    role_categories: list[str]
    role: torch.Tensor  # (R, L, d)
    role_counts: list[int]
    somewhat_names: list[str]
    somewhat: torch.Tensor  # (S, L, d) from score-2 responses
    default: torch.Tensor  # (L, d)
    default_count: int
    trait_names: list[str]
    trait: torch.Tensor  # (T, L, d)
    trait_pairs_kept: list[int]
    dropped_roles: dict[str, int] = field(default_factory=dict)


def compute_vectors(
    records: Sequence[dict[str, Any]],
    activations: torch.Tensor,
    scores: Sequence[int | None],
    categories: dict[str, str],
    settings: VectorSettings,
) -> Vectors:
    """Group per-response activations into role / somewhat / default / trait vectors."""
    acts = activations.float()
    by_role: dict[str, list[int]] = {}
    by_somewhat: dict[str, list[int]] = {}
    default_idx: list[int] = []
    trait_side: dict[tuple[str, str, int, int], int] = {}
    for i, (rec, score) in enumerate(zip(records, scores, strict=True)):
        kind = rec["kind"]
        if kind == "role":
            if score == 3:
                by_role.setdefault(rec["entity"], []).append(i)
            elif score == 2:
                by_somewhat.setdefault(rec["entity"], []).append(i)
            else:
                by_role.setdefault(rec["entity"], [])
        elif kind == "default":
            default_idx.append(i)
        elif kind in ("trait_pos", "trait_neg"):
            trait_side[(rec["entity"], kind, rec["prompt_index"], rec["question_id"])] = i
    if not default_idx:
        raise ArtifactError("no default-Assistant rollouts: cannot build the axis")
    names = sorted(r for r, idx in by_role.items() if len(idx) >= settings.min_role_count)
    dropped = {r: len(idx) for r, idx in sorted(by_role.items()) if len(idx) < settings.min_role_count}
    if len(names) < 2:
        raise ArtifactError(
            f"only {len(names)} role(s) have >= {settings.min_role_count} fully in-role responses; "
            "lower min_role_count or generate more rollouts"
        )
    somewhat_names = sorted(r for r, idx in by_somewhat.items() if len(idx) >= settings.min_role_count)
    trait_pos: dict[str, list[int]] = {}
    trait_neg: dict[str, list[int]] = {}
    kept: dict[str, int] = {}
    for (trait, kind, p, q), i in trait_side.items():
        if kind != "trait_pos" or (trait, "trait_neg", p, q) not in trait_side:
            continue
        j = trait_side[(trait, "trait_neg", p, q)]
        sp, sn = scores[i], scores[j]
        if sp is not None and sn is not None and sp - sn < settings.trait_min_gap:
            continue  # judged, and the pair does not separate the trait
        trait_pos.setdefault(trait, []).append(i)
        trait_neg.setdefault(trait, []).append(j)
        kept[trait] = kept.get(trait, 0) + 1
    trait_names = sorted(trait_pos)
    d_shape = acts.shape[1:]

    def mean_of(groups: dict[str, list[int]], keys: list[str]) -> torch.Tensor:
        if not keys:
            return torch.zeros((0, *d_shape))
        return torch.stack([acts[groups[k]].mean(dim=0) for k in keys])

    trait = (
        mean_of(trait_pos, trait_names) - mean_of(trait_neg, trait_names) if trait_names else torch.zeros((0, *d_shape))
    )
    return Vectors(
        role_names=names,
        role_categories=[categories.get(r, "") for r in names],
        role=mean_of(by_role, names),
        role_counts=[len(by_role[r]) for r in names],
        somewhat_names=somewhat_names,
        somewhat=mean_of(by_somewhat, somewhat_names),
        default=acts[default_idx].mean(dim=0),
        default_count=len(default_idx),
        trait_names=trait_names,
        trait=trait,
        trait_pairs_kept=[kept[t] for t in trait_names],
        dropped_roles=dropped,
    )


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@dataclass
class PersonaSpace:
    """Everything derived from the vectors, per layer; saved as safetensors + JSON."""

    role_names: list[str]
    role_categories: list[str]
    role_vectors: torch.Tensor  # (R, L, d)
    default_vector: torch.Tensor  # (L, d)
    trait_names: list[str]
    trait_vectors: torch.Tensor  # (T, L, d)
    axis: torch.Tensor  # (L, d) raw
    pca_components: torch.Tensor  # (L, k, d) unit rows, sign-aligned with the axis
    pca_explained: torch.Tensor  # (L, k) variance ratio
    pca_mean: torch.Tensor  # (L, d)
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. residual norms, somewhat vectors

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def fit(cls, vectors: Vectors, meta: dict[str, Any] | None = None, n_components: int = 10) -> PersonaSpace:
        roles = vectors.role.float()
        axis = vectors.default.float() - roles.mean(dim=0)
        n_layers = roles.shape[1]
        k = min(n_components, roles.shape[0] - 1, roles.shape[2])
        comps, explained, means = [], [], []
        for layer in range(n_layers):
            x = roles[:, layer]
            mu = x.mean(dim=0)
            xc = x - mu
            _, s, vh = torch.linalg.svd(xc.double(), full_matrices=False)
            var = s**2
            ratio = (var / var.sum()).float()
            v = vh[:k].float()
            signs = torch.sign(v @ axis[layer])
            signs[signs == 0] = 1
            comps.append(v * signs[:, None])
            explained.append(ratio[:k])
            means.append(mu)
        extras = {}
        if vectors.somewhat.shape[0]:
            extras["somewhat_vectors"] = vectors.somewhat
        space = cls(
            role_names=list(vectors.role_names),
            role_categories=list(vectors.role_categories),
            role_vectors=roles,
            default_vector=vectors.default.float(),
            trait_names=list(vectors.trait_names),
            trait_vectors=vectors.trait.float(),
            axis=axis,
            pca_components=torch.stack(comps),
            pca_explained=torch.stack(explained),
            pca_mean=torch.stack(means),
            meta=dict(meta or {}),
            extras=extras,
        )
        space.meta.setdefault("somewhat_names", list(vectors.somewhat_names))
        space.meta.setdefault("role_counts", list(vectors.role_counts))
        space.meta.setdefault("default_count", vectors.default_count)
        space.meta.setdefault("trait_pairs_kept", list(vectors.trait_pairs_kept))
        space.meta.setdefault("dropped_roles", dict(vectors.dropped_roles))
        return space

    # -- basic geometry ----------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.axis.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.axis.shape[1]

    def unit_axis(self, layer: int) -> torch.Tensor:
        return _unit(self.axis[layer])

    def project(self, activations: torch.Tensor, layer: int) -> torch.Tensor:
        """Projection onto the unit axis at `layer` (float32); activations (..., d)."""
        return activations.float() @ self.unit_axis(layer)

    def cos_axis_pc1(self) -> list[float]:
        return [float(_unit(self.axis[i]) @ self.pca_components[i, 0]) for i in range(self.n_layers)]

    def best_layer(self) -> int:
        cos = torch.tensor(self.cos_axis_pc1()).abs()
        return int(cos.argmax())

    def dims_for(self, fraction: float = 0.7) -> list[int]:
        """Number of PCs needed to explain `fraction` of the variance, per layer (capped at k)."""
        cum = self.pca_explained.cumsum(dim=1)
        out = []
        for row in cum:
            hit = (row >= fraction).nonzero()
            out.append(int(hit[0]) + 1 if hit.numel() else row.shape[0])
        return out

    def pc_scores(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(role scores (R, k), default scores (k,)) on the PCs of `layer`."""
        comps = self.pca_components[layer]
        roles = (self.role_vectors[:, layer] - self.pca_mean[layer]) @ comps.T
        default = (self.default_vector[layer] - self.pca_mean[layer]) @ comps.T
        return roles, default

    def default_pc_position(self, layer: int) -> list[float]:
        """The default's place between the extreme roles on each PC, scaled to [0, 1]."""
        roles, default = self.pc_scores(layer)
        lo, hi = roles.min(dim=0).values, roles.max(dim=0).values
        return ((default - lo) / (hi - lo).clamp_min(1e-12)).tolist()

    def default_pc1_distance(self) -> list[float]:
        """Per layer: the default's distance from the nearer end of PC1 (0 at or beyond an end)."""
        out = []
        for layer in range(self.n_layers):
            pos = self.default_pc_position(layer)[0]
            out.append(max(0.0, min(pos, 1 - pos)))
        return out

    def role_ranking(self, layer: int) -> list[tuple[str, float]]:
        """Roles by projection on the unit axis, most Assistant-like first."""
        proj = self.project(self.role_vectors[:, layer], layer)
        order = torch.argsort(proj, descending=True)
        return [(self.role_names[i], float(proj[i])) for i in order]

    def pc_extremes(self, layer: int, pc: int, n: int = 5) -> dict[str, list[str]]:
        roles, _ = self.pc_scores(layer)
        order = torch.argsort(roles[:, pc], descending=True).tolist()
        return {"high": [self.role_names[i] for i in order[:n]], "low": [self.role_names[i] for i in order[-n:][::-1]]}

    def trait_ranking(self, layer: int) -> list[tuple[str, float]]:
        if not self.trait_names:
            return []
        cos = _unit(self.trait_vectors[:, layer]) @ self.unit_axis(layer)
        order = torch.argsort(cos, descending=True)
        return [(self.trait_names[i], float(cos[i])) for i in order]

    # -- comparison --------------------------------------------------------------------------
    def compare(self, other: PersonaSpace, layer: int, n_pcs: int = 3) -> dict[str, Any]:
        """|cos| of matching top PCs and per-role vector cosines between two spaces (e.g. base vs instruct)."""
        if other.hidden_size != self.hidden_size:
            raise ArtifactError(f"cannot compare spaces of hidden size {self.hidden_size} and {other.hidden_size}")
        k = min(n_pcs, self.pca_components.shape[1], other.pca_components.shape[1])
        pcs = [abs(float(self.pca_components[layer, i] @ other.pca_components[layer, i])) for i in range(k)]
        common = [r for r in self.role_names if r in set(other.role_names)]
        a = torch.stack([self.role_vectors[self.role_names.index(r), layer] for r in common]) if common else None
        b = torch.stack([other.role_vectors[other.role_names.index(r), layer] for r in common]) if common else None
        role_cos = {}
        if a is not None:
            ac = a - a.mean(dim=0)
            bc = b - b.mean(dim=0)
            role_cos = {r: float(c) for r, c in zip(common, (_unit(ac) * _unit(bc)).sum(-1), strict=True)}
        return {
            "layer": layer,
            "pc_cosines": pcs,
            "role_cosines": role_cos,
            "axis_cosine": float(self.unit_axis(layer) @ other.unit_axis(layer)),
        }

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        tensors = {
            "role_vectors": self.role_vectors,
            "default_vector": self.default_vector,
            "trait_vectors": self.trait_vectors,
            "axis": self.axis,
            "pca_components": self.pca_components,
            "pca_explained": self.pca_explained,
            "pca_mean": self.pca_mean,
            **{f"extra.{k}": v for k, v in self.extras.items()},
        }
        atomic_write_bytes(d / "space.safetensors", save({k: v.contiguous().float() for k, v in tensors.items()}))
        atomic_write_json(
            d / "space.json",
            {
                "format": FORMAT,
                "role_names": self.role_names,
                "role_categories": self.role_categories,
                "trait_names": self.trait_names,
                "n_layers": self.n_layers,
                "hidden_size": self.hidden_size,
                "meta": self.meta,
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> PersonaSpace:
        d = Path(directory)
        try:
            info = json.loads((d / "space.json").read_text())
            t = load_file(str(d / "space.safetensors"))
        except FileNotFoundError as exc:
            raise ArtifactError(f"{d}: not a persona space ({exc.filename} missing)") from None
        except (json.JSONDecodeError, Exception) as exc:
            raise ArtifactError(f"{d}: unreadable persona space ({exc})") from None
        if info.get("format") != FORMAT:
            raise ArtifactError(f"{d / 'space.json'}: format {info.get('format')!r} is not {FORMAT}")
        return cls(
            role_names=info["role_names"],
            role_categories=info["role_categories"],
            role_vectors=t["role_vectors"],
            default_vector=t["default_vector"],
            trait_names=info["trait_names"],
            trait_vectors=t["trait_vectors"],
            axis=t["axis"],
            pca_components=t["pca_components"],
            pca_explained=t["pca_explained"],
            pca_mean=t["pca_mean"],
            meta=info.get("meta", {}),
            extras={k[len("extra.") :]: v for k, v in t.items() if k.startswith("extra.")},
        )

    def check_model(self, lm: Any, force: bool = False) -> None:
        """Refuse to use this space with a model of another fingerprint or hidden size."""
        if lm.hidden_size != self.hidden_size or lm.n_layers != self.n_layers:
            raise ArtifactError(
                f"space has {self.n_layers} layers x {self.hidden_size} dims but model {lm.name} has "
                f"{lm.n_layers} x {lm.hidden_size}; it was made for another model"
            )
        fp = self.meta.get("model_fingerprint")
        if fp and fp != lm.fingerprint and not force:
            raise ArtifactError(
                f"space was made for model fingerprint {fp} ({self.meta.get('model_name')}), "
                f"not {lm.fingerprint} ({lm.name}); pass force=True / --force to use it anyway"
            )


def import_reference_axis(path: str | Path) -> torch.Tensor:
    """A reference-project axis / vector `.pt` file: loaded with weights_only=True, never unpickled."""
    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{p}: file not found") from None
    except Exception as exc:  # weights_only refuses anything that needs code execution
        raise ArtifactError(
            f"{p}: refused or unreadable as a plain tensor file ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(obj, dict):
        for key in ("axis", "vector", "vectors"):
            if isinstance(obj.get(key), torch.Tensor):
                obj = obj[key]
                break
    if not isinstance(obj, torch.Tensor) or obj.ndim not in (1, 2):
        raise ArtifactError(f"{p}: expected a tensor of shape (n_layers, d) or (d,), got {type(obj).__name__}")
    if not torch.isfinite(obj).all():
        raise ArtifactError(f"{p}: tensor contains NaN or inf")
    return obj.float()
