"""GPU check (run on a CUDA machine): hook overheads of Add / Cap on 8 layers of a random-init
Llama-style model in bfloat16, batch 1 and 32, interleaved repetitions.

Usage: python benchmarks/gpu_check.py --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from persona_axis.benchmarks import paired_overheads, window_layers
from persona_axis.generation import left_pad
from persona_axis.interventions import Add, Cap, InterventionPlan
from persona_axis.modeling import wrap_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 4,
        num_hidden_layers=args.layers,
        num_attention_heads=16,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    lm = wrap_model(model)
    layers = window_layers(lm.n_layers, 8)
    d = torch.randn(lm.hidden_size)
    plans = {
        "plain": InterventionPlan(),
        "add": InterventionPlan([Add(layer, d / d.norm(), 0.5) for layer in layers]),
        "cap": InterventionPlan([Cap(layer, d, floor=0.0) for layer in layers]),
    }
    result = {
        "device": torch.cuda.get_device_name(0),
        "dtype": "bfloat16",
        "n_layers": args.layers,
        "hidden_size": args.hidden,
        "layers": layers,
        "new_tokens": args.new_tokens,
    }

    def timed(prompts, plan):
        ids, mask = left_pad(prompts, 0, "cuda")
        with lm.session(plan), torch.inference_mode():
            torch.cuda.synchronize()
            start = time.perf_counter()
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
            torch.cuda.synchronize()
            return time.perf_counter() - start

    g = torch.Generator().manual_seed(1)
    for bsz in (1, 32):
        prompts = [
            torch.randint(3, 32000, (int(n),), generator=g).tolist() for n in torch.randint(20, 80, (bsz,), generator=g)
        ]
        configs = {name: (lambda p=plan, ps=prompts: timed(ps, p)) for name, plan in plans.items()}
        med, over = paired_overheads(configs, "plain", args.reps)
        for name, t in med.items():
            result[f"{name}_tok_s_b{bsz}"] = round(bsz * args.new_tokens / t, 1)
        result[f"add_overhead_b{bsz}"] = round(over["add"], 4)
        result[f"cap_overhead_b{bsz}"] = round(over["cap"], 4)
    print(json.dumps(result, indent=2))
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
