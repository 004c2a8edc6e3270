"""Tiny random-init models of every supported architecture, built from configs (no downloads)."""

from __future__ import annotations

import functools

import torch

VOCAB = 128
EOS = 2
PAD = 0

COMMON = dict(vocab_size=VOCAB, eos_token_id=EOS, bos_token_id=1, pad_token_id=PAD, tie_word_embeddings=False)
LLAMA_LIKE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def _configs():
    from transformers import (
        Gemma2Config,
        Gemma3Config,
        Gemma3TextConfig,
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Olmo2Config,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
        SiglipVisionConfig,
    )

    gemma_extra = dict(head_dim=8)
    return {
        "llama": LlamaConfig(**COMMON, **LLAMA_LIKE),
        "mistral": MistralConfig(**COMMON, **LLAMA_LIKE, sliding_window=None),
        "qwen2": Qwen2Config(**COMMON, **LLAMA_LIKE),
        "qwen3": Qwen3Config(**COMMON, **LLAMA_LIKE, head_dim=8),
        "gemma": GemmaConfig(**COMMON, **LLAMA_LIKE, **gemma_extra),
        "gemma2": Gemma2Config(**COMMON, **LLAMA_LIKE, **gemma_extra, sliding_window=16),
        "gemma3": Gemma3TextConfig(**COMMON, **LLAMA_LIKE, **gemma_extra, sliding_window=16),
        "gemma3_mm": Gemma3Config(
            text_config=Gemma3TextConfig(**COMMON, **LLAMA_LIKE, **gemma_extra, sliding_window=16),
            vision_config=SiglipVisionConfig(
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=4,
                num_attention_heads=2,
                image_size=28,
                patch_size=14,
            ),
            mm_tokens_per_image=4,
            image_token_index=VOCAB - 1,
            boi_token_index=VOCAB - 2,
            eoi_token_index=VOCAB - 3,
            eos_token_id=EOS,
            pad_token_id=PAD,
            bos_token_id=1,
        ),
        "phi3": Phi3Config(**COMMON, **LLAMA_LIKE),
        "gpt2": GPT2Config(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=4,
            n_head=4,
            n_positions=256,
            eos_token_id=EOS,
            bos_token_id=1,
            pad_token_id=PAD,
        ),
        "gpt_neox": GPTNeoXConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            max_position_embeddings=256,
            eos_token_id=EOS,
            bos_token_id=1,
            pad_token_id=PAD,
        ),
        "olmo2": Olmo2Config(**COMMON, **LLAMA_LIKE),
    }


ARCHITECTURES = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_mm",
    "phi3",
    "gpt2",
    "gpt_neox",
    "olmo2",
]


@functools.cache
def tiny_model(arch: str, seed: int = 0):
    from transformers import AutoModelForCausalLM, Gemma3ForConditionalGeneration

    cfg = _configs()[arch]
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(cfg) if arch == "gemma3_mm" else AutoModelForCausalLM.from_config(cfg)
    model.eval()
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    return model
