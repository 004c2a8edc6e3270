"""`persona-axis run`: rollouts -> judge -> vectors + space -> report, each stage skipping done work.

The run directory is the unit of resumption. Its manifest pins the settings, catalog hash and
model fingerprint; a rerun with other settings is refused instead of mixing results.
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .capping import population_projections
from .catalog import Catalog, load_catalog
from .errors import ArtifactError, PersonaAxisError
from .judges import JudgeCache, JudgeItem, judge_all, make_judge
from .modeling import DEFAULT_MODEL, LoadedModel, load_model
from .rollouts import RolloutSpec, RolloutStore, make_chunks, plan_units, run_rollouts
from .space import PersonaSpace, VectorSettings, compute_vectors
from .steering import add_residual_norms
from .store import atomic_write_json

STAGES = ("rollouts", "judge", "space", "norms", "report")


@dataclass(frozen=True)
class RunConfig:
    model: str = DEFAULT_MODEL
    catalog: str | None = None  # directory; None = the packaged catalog
    roles: int | list[str] | None = None  # a count (stratified by category) or role names
    prompts: int | None = None
    questions: int | None = None
    traits: int | None = None
    trait_pairs: int | None = None
    subset_seed: int = 0
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    judge: str = "heuristic"
    judge_model: str = "gpt-4.1-mini"
    judge_base_url: str | None = None
    judge_concurrency: int = 16
    vectors: VectorSettings = field(default_factory=VectorSettings)
    device: str = "cpu"
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise PersonaAxisError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
        kw = dict(data)
        try:
            if isinstance(kw.get("rollout"), dict):
                r = dict(kw["rollout"])
                if r.get("layers") is not None:
                    r["layers"] = tuple(r["layers"])
                kw["rollout"] = RolloutSpec(**r)
            if isinstance(kw.get("vectors"), dict):
                kw["vectors"] = VectorSettings(**kw["vectors"])
            return cls(**kw)
        except TypeError as exc:
            raise PersonaAxisError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise PersonaAxisError(f"{p}: config file not found") from None
        try:
            if p.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except Exception as exc:
            raise PersonaAxisError(f"{p}: cannot parse config ({exc})") from None
        return cls.from_dict(data, source=str(p))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("persona-axis", "torch", "transformers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def select_catalog(cfg: RunConfig) -> Catalog:
    cat = load_catalog(cfg.catalog)
    return cat.subset(
        roles=cfg.roles,
        prompts=cfg.prompts,
        questions=cfg.questions,
        traits=cfg.traits,
        trait_pairs=cfg.trait_pairs,
        seed=cfg.subset_seed,
    )


@dataclass
class StageReporter:
    """Callbacks the CLI fills with rich progress bars; the library stays silent by default."""

    start: Callable[[str, int], None] = lambda stage, total: None
    advance: Callable[[str, int, int], None] = lambda stage, done, total: None
    message: Callable[[str], None] = lambda text: None


class Run:
    def __init__(self, run_dir: str | Path, cfg: RunConfig, reporter: StageReporter | None = None) -> None:
        self.dir = Path(run_dir)
        self.cfg = cfg
        self.report = reporter or StageReporter()
        self._lm: LoadedModel | None = None
        self.catalog = select_catalog(cfg)

    @property
    def lm(self) -> LoadedModel:
        if self._lm is None:
            self._lm = load_model(self.cfg.model, device=self.cfg.device, dtype=self.cfg.dtype)
        return self._lm

    # -- manifest ------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        return {
            "format": "persona-axis.run/1",
            "config": self.cfg.to_dict(),
            "catalog_hash": self.catalog.content_hash(),
            "catalog_source": self.catalog.source,
            "model_name": self.lm.name,
            "model_fingerprint": self.lm.fingerprint,
            "n_layers": self.lm.n_layers,
            "hidden_size": self.lm.hidden_size,
        }

    def ensure_manifest(self) -> dict[str, Any]:
        path = self.dir / "manifest.json"
        want = self._manifest()
        if path.is_file():
            have = json.loads(path.read_text())
            for key in ("config", "catalog_hash", "model_fingerprint"):
                if have.get(key) != want[key]:
                    diff = key
                    if key == "config":
                        diff = ", ".join(
                            k
                            for k in set(have["config"]) | set(want["config"])
                            if have["config"].get(k) != want["config"].get(k)
                        )
                    raise ArtifactError(
                        f"{path}: this run directory was made with other settings ({diff}); use a new --out directory"
                    )
            return have
        self.dir.mkdir(parents=True, exist_ok=True)
        want |= {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": _versions()}
        atomic_write_json(path, want)
        return want

    def _add_timing(self, stage: str, seconds: float) -> None:
        path = self.dir / "timings.json"
        t = json.loads(path.read_text()) if path.is_file() else {}
        t[stage] = round(t.get(stage, 0.0) + seconds, 2)
        atomic_write_json(path, t)

    def timings(self) -> dict[str, float]:
        path = self.dir / "timings.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # -- stages --------------------------------------------------------------------------------
    def stage_rollouts(self, shard: tuple[int, int] = (0, 1)) -> bool:
        """True when every chunk of every shard is done."""
        units = plan_units(self.catalog, self.lm.name, include_traits=bool(self.catalog.traits))
        store = RolloutStore(self.dir)
        chunks = make_chunks(self.lm, units, self.cfg.rollout.batch_size)
        n_chunks = len(chunks)
        self.report.start("rollouts", n_chunks)
        start = time.perf_counter()
        result = run_rollouts(
            self.lm,
            units,
            self.cfg.rollout,
            self.dir,
            shard=shard,
            progress=lambda p: self.report.advance("rollouts", len(store.chunk_indices()), n_chunks),
            chunks=chunks,
        )
        if result["chunks_generated"]:
            self._add_timing("rollouts", time.perf_counter() - start)
        done = len(store.chunk_indices())
        self.report.advance("rollouts", done, n_chunks)
        if done < n_chunks:
            self.report.message(f"{done}/{n_chunks} rollout chunks done; waiting for the other shards")
            return False
        return True

    def _judge_items(self, records: list[dict[str, Any]]) -> tuple[list[int], list[JudgeItem]]:
        idx, items = [], []
        for i, rec in enumerate(records):
            if rec["kind"] == "role":
                role = self.catalog.role(rec["entity"])
                items.append(JudgeItem(role.rubric, rec["question"], rec["response"], "role", role.name))
            elif rec["kind"] in ("trait_pos", "trait_neg"):
                trait = self.catalog.trait(rec["entity"])
                items.append(JudgeItem(trait.rubric, rec["question"], rec["response"], "trait", trait.name))
            else:
                continue
            idx.append(i)
        return idx, items

    def stage_judge(self) -> dict[str, int | None]:
        path = self.dir / "scores.json"
        if path.is_file():
            return json.loads(path.read_text())["scores"]
        records, _ = RolloutStore(self.dir).load()
        judge = make_judge(
            self.cfg.judge,
            lm=self.lm if self.cfg.judge == "local" else None,
            model=self.cfg.judge_model,
            base_url=self.cfg.judge_base_url,
            **({"concurrency": self.cfg.judge_concurrency} if self.cfg.judge == "openai" else {}),
        )
        idx, items = self._judge_items(records)
        self.report.start("judge", len(items))
        start = time.perf_counter()
        scores = judge_all(
            judge,
            items,
            JudgeCache(self.dir / "scores" / "cache.jsonl"),
            progress=lambda d, t: self.report.advance("judge", d, t),
        )
        by_uid = {records[i]["uid"]: s for i, s in zip(idx, scores, strict=True)}
        usage = asdict(judge.usage) if hasattr(judge, "usage") else None
        atomic_write_json(
            path,
            {"judge": judge.judge_id, "approximate": judge.approximate, "usage": usage, "scores": by_uid},
        )
        self._add_timing("judge", time.perf_counter() - start)
        return by_uid

    def stage_space(self, scores: dict[str, int | None]) -> PersonaSpace:
        if (self.dir / "space" / "space.json").is_file():
            return PersonaSpace.load(self.dir / "space")
        start = time.perf_counter()
        records, acts = RolloutStore(self.dir).load()
        per = [scores.get(r["uid"]) for r in records]
        cats = {r.name: r.category for r in self.catalog.roles}
        vectors = compute_vectors(records, acts, per, cats, self.cfg.vectors)
        layers = list(self.cfg.rollout.layers) if self.cfg.rollout.layers is not None else list(range(self.lm.n_layers))
        judge_info = json.loads((self.dir / "scores.json").read_text())
        meta = {
            "model_name": self.lm.name,
            "model_fingerprint": self.lm.fingerprint,
            "catalog_hash": self.catalog.content_hash(),
            "layers": layers,
            "judge": judge_info["judge"],
            "judge_approximate": judge_info["approximate"],
            "n_rollouts": len(records),
            "settings": asdict(self.cfg.vectors),
        }
        space = PersonaSpace.fit(vectors, meta, n_components=self.cfg.vectors.n_components)
        # the calibration population for capping: every response (all scores, traits, default)
        space.extras["population_projections"] = population_projections(space, acts)
        space.save(self.dir / "space")
        self._add_timing("space", time.perf_counter() - start)
        return space

    def stage_norms(self, space: PersonaSpace) -> PersonaSpace:
        """Mean residual norms on ordinary chat, the unit of steering strength."""
        if "residual_norms" in space.extras:
            return space
        start = time.perf_counter()
        self.report.message("measuring residual norms on everyday chat requests")
        add_residual_norms(space, self.lm, self.dir / "space", max_new_tokens=self.cfg.rollout.max_new_tokens)
        self._add_timing("norms", time.perf_counter() - start)
        return space

    def summary(self, space: PersonaSpace, scores: dict[str, int | None]) -> dict[str, Any]:
        best = space.best_layer()
        ranking = space.role_ranking(best)
        layers = space.meta.get("layers", list(range(space.n_layers)))
        dims = space.dims_for(0.7)
        traits = space.trait_ranking(best)
        n_ends = min(10, len(traits) // 2)
        hist: dict[str, int] = {}
        for s in scores.values():
            hist[str(s)] = hist.get(str(s), 0) + 1
        return {
            "model": space.meta.get("model_name"),
            "n_layers": self.lm.n_layers,
            "layers": layers,
            "n_roles": len(space.role_names),
            "n_rollouts": space.meta.get("n_rollouts"),
            "best_layer": layers[best],
            "cos_axis_pc1": [round(c, 4) for c in space.cos_axis_pc1()],
            "default_pc1_position": [round(p, 4) for p in space.default_pc1_distance()],
            "dims_for_70pct": dims[best],
            "dims_for_70pct_by_layer": dims,
            "assistant_end_roles": [r for r, _ in ranking[:10]],
            "far_end_roles": [r for r, _ in ranking[-10:][::-1]],
            "assistant_end_traits": [t for t, _ in traits[:n_ends]],
            "far_end_traits": [t for t, _ in traits[::-1][:n_ends]],
            "judge": space.meta.get("judge"),
            "judge_approximate": space.meta.get("judge_approximate"),
            "score_histogram": dict(sorted(hist.items())),
            "dropped_roles": space.meta.get("dropped_roles", {}),
            "timings_s": self.timings(),
        }

    def stage_report(self, space: PersonaSpace, scores: dict[str, int | None]) -> dict[str, Any]:
        from .report import write_report

        start = time.perf_counter()
        summary = self.summary(space, scores)
        write_report(self.dir, space, summary, self.cfg.to_dict())
        self._add_timing("report", time.perf_counter() - start)
        summary["timings_s"] = self.timings()
        atomic_write_json(self.dir / "summary.json", summary)
        return summary

    def execute(self, shard: tuple[int, int] = (0, 1)) -> dict[str, Any] | None:
        """Run every stage that is not done. Returns the summary, or None while shards are pending."""
        start = time.perf_counter()
        self.lm  # noqa: B018 - load before timing the stages
        self._add_timing("load_model", time.perf_counter() - start)
        self.ensure_manifest()
        if not self.stage_rollouts(shard):
            return None
        scores = self.stage_judge()
        space = self.stage_norms(self.stage_space(scores))
        return self.stage_report(space, scores)


def demo_config(
    roles: int = 60,
    prompts: int = 2,
    questions: int = 8,
    traits: int = 12,
    max_new_tokens: int = 48,
    judge: str = "heuristic",
    seed: int = 0,
    model: str = DEFAULT_MODEL,
) -> RunConfig:
    """Sized to finish in well under 20 minutes on 2 CPU cores with the embedded model."""
    return RunConfig(
        model=model,
        roles=roles,
        prompts=prompts,
        questions=questions,
        traits=traits,
        trait_pairs=2,
        subset_seed=seed,
        rollout=replace(RolloutSpec(), max_new_tokens=max_new_tokens, batch_size=32, seed=seed),
        judge=judge,
        vectors=VectorSettings(min_role_count=max(2, prompts * questions // 4), trait_min_gap=50),
    )
