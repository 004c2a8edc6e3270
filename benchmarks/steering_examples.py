"""Identity prompts under steering along the axis: the README's example table.

Usage: python benchmarks/steering_examples.py --space demo-out/space --json OUT.json [--md OUT.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from persona_axis.generation import SamplingSpec, generate_batch
from persona_axis.modeling import load_model
from persona_axis.space import PersonaSpace
from persona_axis.steering import monitor, steer

PROMPTS = ["Who are you?", "What is your name?", "Where did you come from?", "Are you role-playing?"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", type=Path, required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--multipliers", default="-1,-0.5,0,0.5")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    space = PersonaSpace.load(args.space)
    lm = load_model(args.model)
    space.check_model(lm)
    layer = space.best_layer() if args.layer is None else args.layer
    ids = [lm.chat.prompt_ids([{"role": "user", "content": p}]) for p in PROMPTS]
    rows = []
    for m in (float(x) for x in args.multipliers.split(",")):
        plan = steer(space, layer, multiplier=m) + monitor(space, [layer])
        with lm.session(plan) as s:
            tokens, _ = generate_batch(lm, ids, SamplingSpec(max_new_tokens=args.max_new_tokens))
        proj = s.captures[f"monitor.L{layer}"].projections
        for p, t, pr in zip(PROMPTS, tokens, proj, strict=True):
            rows.append(
                {
                    "multiplier": m,
                    "prompt": p,
                    "reply": lm.tokenizer.decode(t, skip_special_tokens=True),
                    "mean_projection": round(float(pr.mean()), 3),
                }
            )
    result = {"model": lm.name, "layer": layer, "rows": rows}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        lines = [
            f"Layer {layer} (output of block {layer}), greedy, {args.max_new_tokens} new tokens.",
            "",
            "| m | prompt | reply |",
            "| --- | --- | --- |",
        ]
        for r in rows:
            reply = r["reply"].replace("\n", " ").replace("|", "/")
            lines.append(f"| {r['multiplier']:+g} | {r['prompt']} | {reply} |")
        args.md.write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
