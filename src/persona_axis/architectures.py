"""Locate the decoder blocks of any HF causal LM by its structure, never by its name."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UnsupportedModelError


@dataclass(frozen=True)
class BlockLayout:
    root: torch.nn.Module  # the model whose forward receives input_ids / attention_mask
    blocks: torch.nn.ModuleList
    path: str  # dotted path of `blocks` from the top model
    hidden_size: int

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


def text_config(config):
    if config is None:
        return None
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def _n_layers(config) -> int | None:
    cfg = text_config(config)
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    return None


def _hidden_size(config) -> int | None:
    cfg = text_config(config)
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    return None


def _resolve(model: torch.nn.Module, path: str) -> torch.nn.Module:
    mod = model
    for part in path.split("."):
        if not hasattr(mod, part):
            raise UnsupportedModelError(f"{type(model).__name__} has no submodule {path!r} (stopped at {part!r})")
        mod = getattr(mod, part)
    return mod


def _decoder_root(model: torch.nn.Module) -> torch.nn.Module:
    get = getattr(model, "get_decoder", None)
    if callable(get):
        try:
            dec = get()
        except (AttributeError, NotImplementedError, ValueError):
            dec = None
        if isinstance(dec, torch.nn.Module):
            return dec
    return model


def find_blocks(model: torch.nn.Module, blocks_path: str | None = None) -> BlockLayout:
    """The decoder block list, its calling root, and the hidden size.

    Rule: inside the text decoder (``get_decoder()``), the ModuleList whose length equals the
    text config's layer count; with several, the shallowest. ``blocks_path`` overrides it.
    """
    config = getattr(model, "config", None)
    hidden = _hidden_size(config) if config is not None else None
    how_to = (
        "pass the dotted path of the block list explicitly, e.g. "
        "load_model(..., blocks_path='model.layers') or --blocks-path model.layers"
    )
    if blocks_path:
        blocks = _resolve(model, blocks_path)
        if not isinstance(blocks, torch.nn.ModuleList):
            raise UnsupportedModelError(f"{blocks_path!r} in {type(model).__name__} is not a ModuleList")
        path = blocks_path
    else:
        n = _n_layers(config) if config is not None else None
        decoder = _decoder_root(model)
        candidates = [
            (name, mod)
            for name, mod in decoder.named_modules()
            if isinstance(mod, torch.nn.ModuleList) and n is not None and len(mod) == n
        ]
        if not candidates:
            raise UnsupportedModelError(
                f"cannot locate the decoder blocks of {type(model).__name__} "
                f"(no ModuleList of {n} layers under {type(decoder).__name__}); {how_to}"
            )
        name, blocks = min(candidates, key=lambda c: c[0].count("."))
        prefix = next((k for k, m in model.named_modules() if m is decoder), "")
        path = ".".join(p for p in (prefix, name) if p)
    if hidden is None:
        raise UnsupportedModelError(f"cannot read the hidden size from {type(model).__name__}'s config; {how_to}")
    # the top model's forward sees input_ids and the 2-D attention mask under generate()
    return BlockLayout(root=model, blocks=blocks, path=path, hidden_size=hidden)
