from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The embedded SmolLM2 model, converted once into the persona-axis cache."""
    from persona_axis.modeling import EMBEDDED, cache_root, ensure_converted

    emb = EMBEDDED["smollm2-135m-instruct"]
    if not emb.installed():
        pytest.fail(f"embedded model missing; run: {emb.install}")
    return ensure_converted(emb.gguf_path(cache_root()))


@pytest.fixture(scope="session")
def smol_tokenizer(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smol_dir))


@pytest.fixture(scope="session")
def smol(smol_dir):
    from persona_axis.modeling import load_model

    return load_model("smollm2-135m-instruct")


def template(name: str) -> str:
    return (FIXTURES / "chat_templates" / f"{name}.jinja").read_text()


@pytest.fixture(scope="session")
def smol_space_dir(tmp_path_factory, smol):
    """A small persona space of the embedded model (rollouts, judge, space, norms), built once."""
    from dataclasses import replace

    from persona_axis.pipeline import Run, demo_config

    cfg = demo_config(roles=8, prompts=1, questions=3, traits=2, max_new_tokens=12)
    cfg = replace(cfg, rollout=replace(cfg.rollout, batch_size=16), vectors=replace(cfg.vectors, min_role_count=1))
    out = tmp_path_factory.mktemp("smol-run")
    run = Run(out, cfg)
    run._lm = smol
    run.execute()
    return out / "space"
