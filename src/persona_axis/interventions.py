"""The one hook engine: reads and writes on the residual stream at the output of decoder block L.

Every feature (capture, steering, capping, monitoring) is a declarative op in an
`InterventionPlan`. A `HookEngine` applies a plan inside a context manager:

    with engine.session(plan) as s:
        model.generate(...)
    s.captures["L12"].mean      # (n_sequences, d) float32

Conventions (pinned by tests):
- layer L = output of block L (0-indexed) = HF ``hidden_states[L + 1]`` for L < n_layers - 1
  (HF replaces the last entry with the final-norm output).
- projections are float32 onto unit vectors whatever the model dtype.
- ops on one layer run in the order they were declared; put a Capture last to see the
  result of the other ops.
- token positions are absolute within each sequence: the first forward call of a batch
  (KV cache empty) is the prompt, later calls are the response, left padding is read from
  the attention mask and tokens fed after an end-of-turn token are excluded.

Our hooks run before any other hook on a block (so HF's ``output_hidden_states``, which
transformers records with its own hooks, shows the edited residual). They are only
installed while at least one session of this engine is open, and a
session's ops only act in the thread / asyncio context that opened it, so two threads can
run the same model with different plans.
"""

from __future__ import annotations

import contextvars
import json
import math
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import InvalidPlanError

Region = Literal["all", "prompt", "response"]
REGIONS: tuple[str, ...] = ("all", "prompt", "response")


def as_vector(value: Any, what: str) -> torch.Tensor:
    """A finite 1-D float32 CPU tensor, or InvalidPlanError naming `what`."""
    try:
        vec = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidPlanError(f"{what}: not a numeric vector ({exc})") from None
    if vec.ndim != 1 or vec.numel() == 0:
        raise InvalidPlanError(f"{what}: expected a 1-D vector, got shape {tuple(vec.shape)}")
    bad = (~torch.isfinite(vec)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise InvalidPlanError(f"{what}: non-finite value {vec[i].item()} at index {i}")
    return vec


def unit(value: Any, what: str) -> torch.Tensor:
    vec = as_vector(value, what)
    norm = vec.norm()
    if not norm > 0:
        raise InvalidPlanError(f"{what}: zero vector cannot be normalised")
    return vec / norm


def _check_region(region: str, what: str) -> None:
    if region not in REGIONS:
        raise InvalidPlanError(f"{what}: region {region!r} is not one of {', '.join(REGIONS)}")


def _check_scalar(value: float | None, what: str) -> None:
    if value is not None and not math.isfinite(float(value)):
        raise InvalidPlanError(f"{what}: non-finite value {value}")


@dataclass(frozen=True, eq=False)
class Capture:
    """Per-sequence mean of the residual over a token region; optional per-token projections."""

    layer: int
    region: Region = "response"
    directions: torch.Tensor | None = None  # (k, d); rows are normalised
    name: str = ""
    norms: bool = False  # also the per-sequence mean of per-token L2 norms

    def __post_init__(self) -> None:
        _check_region(self.region, f"Capture(layer={self.layer}).region")
        if self.directions is not None:
            d = torch.as_tensor(self.directions, dtype=torch.float32)
            if d.ndim == 1:
                d = d[None]
            rows = [unit(r, f"Capture(layer={self.layer}).directions[{i}]") for i, r in enumerate(d)]
            object.__setattr__(self, "directions", torch.stack(rows))

    @property
    def key(self) -> str:
        return self.name or f"L{self.layer}"


@dataclass(frozen=True, eq=False)
class Add:
    """h <- h + coefficient * vector at the positions of `region`."""

    layer: int
    vector: torch.Tensor
    coefficient: float = 1.0
    region: Region = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", as_vector(self.vector, f"Add(layer={self.layer}).vector"))
        _check_scalar(self.coefficient, f"Add(layer={self.layer}).coefficient")
        _check_region(self.region, f"Add(layer={self.layer}).region")


@dataclass(frozen=True, eq=False)
class Cap:
    """Clamp the projection on a unit direction: h <- h - u * min(<h,u> - floor, 0) (mirror for ceiling)."""

    layer: int
    direction: torch.Tensor
    floor: float | None = None
    ceiling: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        what = f"Cap(layer={self.layer})"
        object.__setattr__(self, "direction", unit(self.direction, f"{what}.direction"))
        if self.floor is None and self.ceiling is None:
            raise InvalidPlanError(f"{what}: give a floor, a ceiling or both")
        _check_scalar(self.floor, f"{what}.floor")
        _check_scalar(self.ceiling, f"{what}.ceiling")
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise InvalidPlanError(f"{what}: floor {self.floor} is above ceiling {self.ceiling}")

    @property
    def key(self) -> str:
        return self.name or f"L{self.layer}"


@dataclass(frozen=True, eq=False)
class Ablate:
    """Remove the component along a unit direction: h <- h - <h,u> u."""

    layer: int
    direction: torch.Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", unit(self.direction, f"Ablate(layer={self.layer}).direction"))


Op = Capture | Add | Cap | Ablate
_OP_TYPES: dict[str, type] = {"capture": Capture, "add": Add, "cap": Cap, "ablate": Ablate}
_TENSOR_FIELDS = {"directions", "vector", "direction"}


def _op_to_dict(op: Op) -> dict[str, Any]:
    kind = next(k for k, t in _OP_TYPES.items() if isinstance(op, t))
    out: dict[str, Any] = {"op": kind}
    for name in op.__dataclass_fields__:
        value = getattr(op, name)
        out[name] = value.tolist() if isinstance(value, torch.Tensor) else value
    return out


def _op_from_dict(data: Mapping[str, Any], where: str) -> Op:
    if not isinstance(data, Mapping):
        raise InvalidPlanError(f"{where}: expected an object, got {type(data).__name__}")
    kind = data.get("op")
    if kind not in _OP_TYPES:
        raise InvalidPlanError(f"{where}.op: unknown op {kind!r} (one of {', '.join(_OP_TYPES)})")
    cls = _OP_TYPES[kind]
    fields = cls.__dataclass_fields__
    unknown = set(data) - set(fields) - {"op"}
    if unknown:
        raise InvalidPlanError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for {kind}")
    layer = data.get("layer")
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise InvalidPlanError(f"{where}.layer: expected an integer, got {layer!r}")
    kwargs = {k: v for k, v in data.items() if k != "op"}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InvalidPlanError(f"{where}: {exc}") from None
    except InvalidPlanError as exc:
        raise InvalidPlanError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class InterventionPlan:
    """An ordered, JSON-serialisable list of ops. Plans compose with `+`."""

    ops: tuple[Op, ...] = ()

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        object.__setattr__(self, "ops", tuple(ops))
        for i, op in enumerate(self.ops):
            if not isinstance(op, tuple(_OP_TYPES.values())):
                raise InvalidPlanError(f"ops[{i}]: {type(op).__name__} is not an intervention op")

    def __add__(self, other: InterventionPlan) -> InterventionPlan:
        return InterventionPlan(self.ops + other.ops)

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def layers(self) -> list[int]:
        return sorted({op.layer for op in self.ops})

    def by_layer(self) -> dict[int, list[Op]]:
        out: dict[int, list[Op]] = {}
        for op in self.ops:
            out.setdefault(op.layer, []).append(op)
        return out

    def validate(self, n_layers: int, hidden_size: int) -> None:
        """Raise InvalidPlanError naming the first op that does not fit the model."""
        names: set[str] = set()
        for i, op in enumerate(self.ops):
            what = f"ops[{i}] ({type(op).__name__})"
            if not 0 <= op.layer < n_layers:
                raise InvalidPlanError(f"{what}: layer {op.layer} is out of range 0..{n_layers - 1}")
            for fname in _TENSOR_FIELDS & set(op.__dataclass_fields__):
                t = getattr(op, fname)
                if t is not None and t.shape[-1] != hidden_size:
                    raise InvalidPlanError(
                        f"{what}.{fname}: size {t.shape[-1]} does not match the model's hidden size {hidden_size}"
                    )
            if isinstance(op, (Capture, Cap)):
                key = f"{type(op).__name__}:{op.key}"
                if key in names:
                    raise InvalidPlanError(f"{what}: duplicate result name {op.key!r}; give each a distinct name")
                names.add(key)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "persona-axis.plan/1", "ops": [_op_to_dict(op) for op in self.ops]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "plan") -> InterventionPlan:
        if not isinstance(data, Mapping) or not isinstance(data.get("ops"), list):
            raise InvalidPlanError(f"{source}: expected an object with a list field 'ops'")
        return cls(_op_from_dict(d, f"{source}: ops[{i}]") for i, d in enumerate(data["ops"]))

    def save(self, path: str | Path) -> None:
        from .store import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> InterventionPlan:
        from .store import read_json

        return cls.from_dict(read_json(Path(path), InvalidPlanError, "plan file"), source=str(path))


# ----------------------------------------------------------------------------------------
# Results


@dataclass
class CaptureResult:
    """Per-sequence results of one Capture op, in the order sequences were run."""

    mean: torch.Tensor  # (n, d) float32; NaN rows where a sequence had no token in the region
    count: torch.Tensor  # (n,) number of tokens averaged
    projections: list[torch.Tensor] | None  # per sequence (n_tokens, k) float32, if directions given
    norm_mean: torch.Tensor | None = None  # (n,) mean per-token norm, if norms=True


@dataclass
class CapStats:
    changed: int  # token positions whose projection was clamped
    total: int  # valid token positions seen

    @property
    def fraction(self) -> float:
        return self.changed / self.total if self.total else 0.0


@dataclass
class _StepContext:
    valid: torch.Tensor  # (B, T) bool: real tokens of the sequence (no padding, nothing after end-of-turn)
    response: torch.Tensor  # (B, T) bool
    positions: torch.Tensor  # (T,) absolute positions

    def mask(self, region: str) -> torch.Tensor:
        if region == "all":
            return self.valid
        if region == "response":
            return self.valid & self.response
        return self.valid & ~self.response


@dataclass
class _CaptureAcc:
    sum: torch.Tensor | None = None
    count: torch.Tensor | None = None
    proj: list[torch.Tensor] = field(default_factory=list)
    proj_mask: list[torch.Tensor] = field(default_factory=list)
    norm_sum: torch.Tensor | None = None


class InterventionSession:
    """State of one applied plan: per-batch accumulators and finished results."""

    def __init__(self, engine: HookEngine, plan: InterventionPlan, eos_token_ids: Sequence[int]) -> None:
        self.engine = engine
        self.plan = plan
        self._by_layer = plan.by_layer()
        self._eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.long)
        self._ctx: _StepContext | None = None
        self._finished: torch.Tensor | None = None
        self._seen = 0
        self._explicit_response: torch.Tensor | None = None
        self._acc: dict[str, _CaptureAcc] = {}
        self._done: dict[str, list[CaptureResult]] = {}
        self._cap_deltas: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._device_params: dict[int, torch.Tensor] = {}

    # -- regions ---------------------------------------------------------------------------
    def set_response_mask(self, response_mask: torch.Tensor | None) -> None:
        """For teacher-forced passes: mark which positions of the next batch are the response.

        Without it, the first forward call of each batch is the prompt and every later call
        (generation steps under KV cache) is the response.
        """
        self._explicit_response = None if response_mask is None else response_mask.bool()

    # -- called by the engine's hooks -------------------------------------------------------
    def _begin_step(self, input_ids: torch.Tensor | None, shape: tuple[int, int], attention_mask: Any) -> None:
        bsz, cur = shape
        device = self.engine.device_of_inputs
        if isinstance(attention_mask, torch.Tensor) and attention_mask.ndim == 2 and attention_mask.shape[1] >= cur:
            past = attention_mask.shape[1] - cur
            valid = attention_mask[:, past:].bool()
            device = attention_mask.device
        else:
            past = self._seen
            valid = None
        if past == 0:
            self._flush()
            self._finished = None
        if valid is None:
            valid = torch.ones(bsz, cur, dtype=torch.bool, device=device)
        if self._explicit_response is not None:
            response = self._explicit_response[:, past : past + cur].to(valid.device)
        elif past == 0:
            response = torch.zeros_like(valid)
        else:
            response = torch.ones_like(valid)
            if input_ids is not None and self._eos.numel():
                if self._eos.device != input_ids.device:
                    self._eos = self._eos.to(input_ids.device)
                hit = torch.isin(input_ids, self._eos)
                ended = hit.cumsum(dim=1) > 0
                if self._finished is not None:
                    ended = ended | self._finished[:, None]
                self._finished = ended[:, -1]
                valid = valid & ~ended
        self._seen = past + cur
        positions = torch.arange(past, past + cur, device=valid.device)
        self._ctx = _StepContext(valid=valid, response=response, positions=positions)

    def _param(
        self, op: Op, t: torch.Tensor, like: torch.Tensor, dtype: torch.dtype, scale: float = 1.0
    ) -> torch.Tensor:
        """`t` (times `scale`) on the layer's device and dtype, converted once per session.

        Keyed by op only: a block runs on one device with one dtype.
        """
        cached = self._device_params.get(id(op))
        if cached is None:
            cached = (t.to(device=like.device, dtype=torch.float32) * scale).to(dtype)
            self._device_params[id(op)] = cached
        return cached

    def _run_layer(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        ctx = self._ctx
        if ctx is None:  # forward called on the blocks without the root (unusual); treat all as valid
            ctx = _StepContext(
                valid=torch.ones(h.shape[:2], dtype=torch.bool, device=h.device),
                response=torch.zeros(h.shape[:2], dtype=torch.bool, device=h.device),
                positions=torch.arange(h.shape[1], device=h.device),
            )
            self._ctx = ctx
        for op in self._by_layer.get(layer, ()):
            if isinstance(op, Capture):
                self._capture(op, h, ctx)
            elif isinstance(op, Add):
                delta = self._param(op, op.vector, h, h.dtype, op.coefficient)
                if op.region == "all":
                    h = h + delta
                else:
                    m = ctx.mask(op.region)[..., None].to(h.dtype)
                    h = h + m * delta
            elif isinstance(op, Cap):
                h = self._cap(op, h, ctx)
            elif isinstance(op, Ablate):
                u = self._param(op, op.direction, h, torch.float32)
                proj = h.float() @ u
                h = (h.float() - proj[..., None] * u).to(h.dtype)
        return h

    def _capture(self, op: Capture, h: torch.Tensor, ctx: _StepContext) -> None:
        acc = self._acc.setdefault(op.key, _CaptureAcc())
        m = ctx.mask(op.region)
        hf = h.float()
        s = (hf * m[..., None]).sum(dim=1)
        c = m.sum(dim=1)
        acc.sum = s if acc.sum is None else acc.sum + s
        acc.count = c if acc.count is None else acc.count + c
        if op.norms:
            n = (hf.norm(dim=-1) * m).sum(dim=1)
            acc.norm_sum = n if acc.norm_sum is None else acc.norm_sum + n
        if op.directions is not None:
            d = self._param(op, op.directions, h, torch.float32)
            acc.proj.append(hf @ d.T)
            acc.proj_mask.append(m)

    def _cap(self, op: Cap, h: torch.Tensor, ctx: _StepContext) -> torch.Tensor:
        u = self._param(op, op.direction, h, torch.float32)
        hf = h.float()
        proj = hf @ u
        if op.floor is not None and op.ceiling is not None:
            delta = proj - proj.clamp(op.floor, op.ceiling)
        elif op.floor is not None:
            delta = (proj - op.floor).clamp_(max=0.0)
        else:
            delta = (proj - op.ceiling).clamp_(min=0.0)
        # unchanged positions subtract an exact zero, so they stay bit-identical (also after
        # the float32 -> model dtype round trip, which is exact for values of that dtype)
        h = torch.addcmul(hf, delta.unsqueeze(-1), u, value=-1.0).to(h.dtype)
        # counted when asked for (cap_stats), so the hot path launches no reduction kernels
        self._cap_deltas.setdefault(op.key, []).append((delta, ctx.valid))
        return h

    # -- results ----------------------------------------------------------------------------
    def _flush(self) -> None:
        for key, acc in self._acc.items():
            if acc.sum is None:
                continue
            count = acc.count.float()
            mean = acc.sum / count[:, None]
            projections = None
            if acc.proj:
                proj = torch.cat(acc.proj, dim=1)
                pm = torch.cat(acc.proj_mask, dim=1)
                projections = [proj[b][pm[b]].cpu() for b in range(proj.shape[0])]
            norm_mean = None if acc.norm_sum is None else (acc.norm_sum / count).cpu()
            self._done.setdefault(key, []).append(
                CaptureResult(mean=mean.cpu(), count=acc.count.cpu(), projections=projections, norm_mean=norm_mean)
            )
        self._acc = {}

    @property
    def captures(self) -> dict[str, CaptureResult]:
        """Results of every Capture op, sequences of all batches run in this session concatenated."""
        self._flush()
        out = {}
        for key, parts in self._done.items():
            projs = None
            if parts[0].projections is not None:
                projs = [p for part in parts for p in (part.projections or [])]
            out[key] = CaptureResult(
                mean=torch.cat([p.mean for p in parts]),
                count=torch.cat([p.count for p in parts]),
                projections=projs,
                norm_mean=None if parts[0].norm_mean is None else torch.cat([p.norm_mean for p in parts]),
            )
        return out

    @property
    def cap_stats(self) -> dict[str, CapStats]:
        out = {}
        for key, steps in self._cap_deltas.items():
            changed = total = 0
            by_batch: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for d, v in steps:  # steps of one batch share the batch size: one concatenation each
                by_batch.setdefault(d.shape[0], []).append((d, v))
            for parts in by_batch.values():
                deltas = torch.cat([d for d, _ in parts], dim=1)
                valid = torch.cat([v for _, v in parts], dim=1)
                changed += int(((deltas != 0) & valid).sum())
                total += int(valid.sum())
            out[key] = CapStats(changed=changed, total=total)
        return out


# engine id -> the session open in this thread / asyncio context (context-local, not global)
_ACTIVE: contextvars.ContextVar[Mapping[int, InterventionSession] | None] = contextvars.ContextVar(
    "persona_axis_active_sessions", default=None
)


def _active() -> Mapping[int, InterventionSession]:
    return _ACTIVE.get() or {}


class HookEngine:
    """Installs dispatcher hooks on a model's decoder blocks while sessions are open."""

    def __init__(
        self,
        blocks: Sequence[torch.nn.Module],
        root: torch.nn.Module,
        hidden_size: int,
        eos_token_ids: Sequence[int] = (),
    ) -> None:
        self.blocks = list(blocks)
        self.root = root
        self.hidden_size = hidden_size
        self.eos_token_ids = tuple(eos_token_ids)
        self._lock = threading.Lock()
        self._layer_refs: dict[int, int] = {}
        self._layer_handles: dict[int, Any] = {}
        self._root_refs = 0
        self._root_handle: Any = None

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def device_of_inputs(self) -> torch.device:
        p = next(self.root.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # -- hook installation (ref-counted so sessions in several threads share one hook) ----
    def _acquire(self, layers: Iterable[int]) -> None:
        with self._lock:
            if self._root_refs == 0:
                self._root_handle = self.root.register_forward_pre_hook(self._root_hook, with_kwargs=True, prepend=True)
            self._root_refs += 1
            for layer in layers:
                if self._layer_refs.get(layer, 0) == 0:
                    self._layer_handles[layer] = self.blocks[layer].register_forward_hook(
                        self._make_hook(layer), prepend=True
                    )
                self._layer_refs[layer] = self._layer_refs.get(layer, 0) + 1

    def _release(self, layers: Iterable[int]) -> None:
        with self._lock:
            for layer in layers:
                self._layer_refs[layer] -= 1
                if self._layer_refs[layer] == 0:
                    self._layer_handles.pop(layer).remove()
            self._root_refs -= 1
            if self._root_refs == 0:
                self._root_handle.remove()
                self._root_handle = None

    def _root_hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        session = _active().get(id(self))
        if session is None:
            return None
        ids = kwargs.get("input_ids")
        if ids is None and args and isinstance(args[0], torch.Tensor) and args[0].dtype == torch.long:
            ids = args[0]
        if ids is not None:
            shape = (ids.shape[0], ids.shape[1])
        else:
            emb = kwargs.get("inputs_embeds")
            if emb is None:
                raise InvalidPlanError("forward call without input_ids or inputs_embeds")
            shape = (emb.shape[0], emb.shape[1])
        session._begin_step(ids, shape, kwargs.get("attention_mask"))
        return None

    def _make_hook(self, layer: int):
        engine_id = id(self)

        def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
            session = _active().get(engine_id)
            if session is None or layer not in session._by_layer:
                return None
            if isinstance(output, tuple):
                return (session._run_layer(layer, output[0]), *output[1:])
            return session._run_layer(layer, output)

        return hook

    @contextmanager
    def session(
        self, plan: InterventionPlan | Iterable[Op] = (), eos_token_ids: Sequence[int] | None = None
    ) -> Iterator[InterventionSession]:
        """Apply `plan` for the duration of the block; hooks are removed on exit, even on error."""
        if not isinstance(plan, InterventionPlan):
            plan = InterventionPlan(plan)
        plan.validate(self.n_layers, self.hidden_size)
        session = InterventionSession(self, plan, self.eos_token_ids if eos_token_ids is None else eos_token_ids)
        layers = plan.layers
        active = dict(_active())
        if id(self) in active:
            raise InvalidPlanError("a session of this engine is already open in this context; compose plans with +")
        active[id(self)] = session
        self._acquire(layers)
        token = _ACTIVE.set(active)
        try:
            yield session
        finally:
            _ACTIVE.reset(token)
            self._release(layers)
            session._flush()
