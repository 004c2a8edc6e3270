"""Chat formatting with real templates: system detection, thinking off, exact assistant spans."""

from __future__ import annotations

import pytest

from conftest import template
from persona_axis.chat import ChatFormat
from persona_axis.errors import ChatTemplateError

TEMPLATES = {"smollm2": True, "llama3": True, "gemma2": False, "gemma3": True, "qwen3": True}
# the real tokenizers of these models have their turn markers as special tokens
SPECIALS = {
    "llama3": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "gemma2": ["<bos>", "<start_of_turn>", "<end_of_turn>"],
    "gemma3": ["<bos>", "<start_of_turn>", "<end_of_turn>"],
    "qwen3": ["<think>", "</think>"],
    "smollm2": [],
}


@pytest.fixture
def fmt_for(smol_dir):
    from transformers import AutoTokenizer

    def make(name):
        tok = AutoTokenizer.from_pretrained(str(smol_dir))
        if SPECIALS[name]:
            tok.add_special_tokens({"additional_special_tokens": SPECIALS[name]})
        return ChatFormat(tok, chat_template=template(name))

    return make


CONVO = [
    {"role": "system", "content": "You are a lighthouse keeper."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Evening. The lamp is lit."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "  Just the keeper of this rock.\n"},
]


@pytest.mark.parametrize("name", TEMPLATES)
def test_system_support_is_detected_from_the_template(name, smol_tokenizer):
    fmt = ChatFormat(smol_tokenizer, chat_template=template(name))
    assert fmt.supports_system is TEMPLATES[name]
    text = fmt.render(CONVO[:2], add_generation_prompt=True)
    assert "You are a lighthouse keeper." in text
    if not TEMPLATES[name]:
        assert "You are a lighthouse keeper.\n\nHi there" in text


@pytest.mark.parametrize("name", TEMPLATES)
def test_assistant_spans_are_exactly_the_content(name, fmt_for):
    fmt = fmt_for(name)
    smol_tokenizer = fmt.tokenizer
    enc = fmt.encode(CONVO)
    assert len(enc.assistant_spans) == 2
    decoded = [smol_tokenizer.decode(enc.input_ids[a:b]) for a, b in enc.assistant_spans]
    assert decoded[0].strip() == "Evening. The lamp is lit."
    assert decoded[1].strip() == "Just the keeper of this rock."
    for a, b in enc.assistant_spans:
        inside = smol_tokenizer.convert_ids_to_tokens(enc.input_ids[a:b])
        assert not any(t in smol_tokenizer.all_special_tokens for t in inside)
        # the token right after the span is the template's own text, never content
        assert smol_tokenizer.decode(enc.input_ids[b : b + 1]).strip() not in ("rock", "lit", ".")
    assert enc.input_ids == list(smol_tokenizer(enc.text, add_special_tokens=False)["input_ids"])


def test_qwen3_thinking_is_off_with_an_empty_think_block_on_the_last_turn_only(fmt_for):
    fmt = fmt_for("qwen3")
    smol_tokenizer = fmt.tokenizer
    assert fmt.template_kwargs == {"enable_thinking": False}
    prompt = fmt.render(CONVO[:4], add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    full = fmt.encode(CONVO)
    assert full.text.count("<think>") == 1
    think_at = full.text.index("<think>")
    assert full.assistant_char_spans[0][1] < think_at < full.assistant_char_spans[1][0]
    a, b = full.assistant_spans[1]
    assert "think" not in smol_tokenizer.decode(full.input_ids[a:b])


def test_llama3_headers_and_eot_are_outside_the_span(fmt_for):
    fmt = fmt_for("llama3")
    enc = fmt.encode(CONVO)
    start, end = enc.assistant_char_spans[1]
    assert enc.text[:start].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert enc.text[end:].startswith("<|eot_id|>")


def test_a_template_that_cannot_render_names_the_problem(smol_tokenizer):
    fmt = ChatFormat(smol_tokenizer, chat_template=template("gemma2"))
    with pytest.raises(ChatTemplateError, match="cannot render roles \\['user', 'user'\\].*alternate"):
        fmt.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(ChatTemplateError, match="messages\\[0\\].role: unknown role 'narrator'"):
        fmt.render([{"role": "narrator", "content": "a"}])


def test_no_system_prompt_renders_the_templates_own_default(smol_tokenizer):
    fmt = ChatFormat(smol_tokenizer, chat_template=template("smollm2"))
    text = fmt.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n")  # SmolLM2 inserts its own default system text
