"""Command line: a thin typed shell over the library. Errors a user can fix exit with code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .errors import PersonaAxisError

app = typer.Typer(
    name="persona-axis",
    help="Find, watch and hold the Assistant persona inside open-weight chat models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Speed benchmarks that write JSON with ratios measured in one run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
space_app = typer.Typer(help="Inspect and compare persona spaces.", no_args_is_help=True)
app.add_typer(space_app, name="space")
cap_app = typer.Typer(help="Calibrate and import activation-capping plans.", no_args_is_help=True)
app.add_typer(cap_app, name="cap")

err = Console(stderr=True)
out = Console()

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Embedded name, local directory, .gguf file or hub id."),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.")]
DtypeOpt = Annotated[str, typer.Option(help="float32, bfloat16 or float16.")]


def _write_json(path: Path | None, data: dict) -> None:
    from .store import atomic_write_json

    if path is None:
        print(json.dumps(data, indent=2))
    else:
        atomic_write_json(path, data)
        err.print(f"wrote {path}")


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False) -> None:
    """Versions, device, threads, embedded models and where their cache is.

    Example: persona-axis doctor --json
    """
    from .doctor import environment_report

    report = environment_report()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if key == "embedded_models":
            for name, entry in value.items():
                state = "installed" if entry["installed"] else f"missing (install: {entry['install']})"
                conv = " , converted cache ready" if entry.get("converted") else ""
                out.print(f"  model {name}: {state}{conv}")
        else:
            out.print(f"{key}: {value}")


@app.command()
def generate(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The user message.")],
    model: ModelOpt = "smollm2-135m-instruct",
    system: Annotated[
        str | None, typer.Option(help="System prompt (folded into the user turn if unsupported).")
    ] = None,
    plan: Annotated[Path | None, typer.Option(help="Intervention plan JSON (ops: capture/add/cap/ablate).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 64,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    as_json: Annotated[bool, typer.Option("--json", help="Print {text, tokens, cap_stats, captures} as JSON.")] = False,
) -> None:
    """Greedy reply to one prompt, optionally under an intervention plan.

    Example: persona-axis generate -p "Who are you?" --plan plan.json --json
    """
    from .generation import SamplingSpec, generate_tokens
    from .interventions import InterventionPlan
    from .modeling import load_model

    the_plan = InterventionPlan.load(plan) if plan else InterventionPlan()
    lm = load_model(model, device=device, dtype=dtype)
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": prompt}
    ]
    ids = lm.chat.prompt_ids(messages)
    res = generate_tokens(lm, [ids], SamplingSpec(max_new_tokens=max_new_tokens), the_plan)
    text = lm.tokenizer.decode(res.tokens[0], skip_special_tokens=True)
    if not as_json:
        print(text)
        return
    caps = res.session.captures
    data = {
        "text": text,
        "tokens": len(res.tokens[0]),
        "cap_stats": {k: vars(v) | {"fraction": v.fraction} for k, v in res.session.cap_stats.items()},
        "captures": {
            k: {
                "count": int(v.count[0]),
                "projections_mean": v.projections[0].mean(0).tolist() if v.projections else None,
            }
            for k, v in caps.items()
        },
    }
    print(json.dumps(data, indent=2))


def _reporter():
    """A StageReporter drawing rich progress bars with ETA on stderr."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .pipeline import StageReporter

    progress = Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )
    tasks: dict[str, int] = {}

    def start(stage: str, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)

    def advance(stage: str, done: int, total: int) -> None:
        progress.update(tasks[stage], completed=done, total=total)

    return progress, StageReporter(start=start, advance=advance, message=lambda m: err.print(m))


def _parse_shard(shard: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise PersonaAxisError(f"--shard: {shard!r} is not of the form i/n (e.g. 0/4)") from None
    if not (n >= 1 and 0 <= i < n):
        raise PersonaAxisError(f"--shard: {shard!r} needs 0 <= i < n")
    return i, n


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    best = summary["layers"].index(summary["best_layer"])
    table = Table(title=f"persona space: {summary['model']}", show_header=False)
    for key, value in [
        ("roles / rollouts", f"{summary['n_roles']} / {summary['n_rollouts']}"),
        ("best layer", summary["best_layer"]),
        ("|cos(axis, PC1)|", f"{abs(summary['cos_axis_pc1'][best]):.3f}"),
        ("default distance from PC1 end", f"{summary['default_pc1_position'][best]:.3f}"),
        ("dims for 70% variance", summary["dims_for_70pct"]),
        ("Assistant end", ", ".join(summary["assistant_end_roles"][:6])),
        ("far end", ", ".join(summary["far_end_roles"][:6])),
        ("judge", summary["judge"]),
        ("timings (s)", ", ".join(f"{k} {v}" for k, v in summary["timings_s"].items())),
    ]:
        table.add_row(key, str(value))
    err.print(table)


def _execute(out_dir: Path, cfg, shard: str) -> None:
    from .pipeline import Run

    progress, reporter = _reporter()
    with progress:
        summary = Run(out_dir, cfg, reporter).execute(_parse_shard(shard))
    if summary is None:
        return
    _print_summary(summary)
    err.print(f"report: {out_dir / 'report.html'}  summary: {out_dir / 'summary.json'}")


@app.command()
def run(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (resumable).")],
    config: Annotated[Path | None, typer.Option(help="RunConfig as JSON or TOML; flags below override it.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Embedded name, dir, .gguf or hub id.")] = None,
    catalog: Annotated[Path | None, typer.Option(help="Catalog directory (ours or the reference layout).")] = None,
    roles: Annotated[
        str | None, typer.Option(help="N roles (stratified by category) or comma-separated names.")
    ] = None,
    prompts: Annotated[int | None, typer.Option(help="System prompts per role.")] = None,
    questions: Annotated[int | None, typer.Option(help="Extraction questions.")] = None,
    traits: Annotated[int | None, typer.Option(help="Traits (0 = none).")] = None,
    judge: Annotated[str | None, typer.Option(help="heuristic, local or openai.")] = None,
    judge_model: Annotated[str | None, typer.Option(help="Model name for --judge openai.")] = None,
    judge_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    min_role_count: Annotated[int | None, typer.Option(help="Score-3 responses needed to keep a role.")] = None,
    device: Annotated[str | None, typer.Option()] = None,
    dtype: Annotated[str | None, typer.Option()] = None,
    shard: Annotated[str, typer.Option(help="i/n: this process does chunks with index % n == i.")] = "0/1",
) -> None:
    """The full pipeline: rollouts -> judge -> vectors + space -> report. Rerun to resume.

    Example: persona-axis run --model Qwen/Qwen3-32B --device auto --dtype bfloat16 --judge openai --out runs/qwen32b
    """
    from dataclasses import replace

    from .pipeline import RunConfig

    cfg = RunConfig.from_file(config) if config else RunConfig()
    role_sel: int | list[str] | None = None
    if roles is not None:
        role_sel = int(roles) if roles.strip().isdigit() else [r.strip() for r in roles.split(",") if r.strip()]
    top = {
        k: v
        for k, v in dict(
            model=model,
            catalog=str(catalog) if catalog else None,
            roles=role_sel,
            prompts=prompts,
            questions=questions,
            traits=traits,
            judge=judge,
            judge_model=judge_model,
            judge_base_url=judge_base_url,
            device=device,
            dtype=dtype,
        ).items()
        if v is not None
    }
    cfg = replace(cfg, **top)
    roll = {k: v for k, v in dict(max_new_tokens=max_new_tokens, batch_size=batch_size).items() if v is not None}
    if roll:
        cfg = replace(cfg, rollout=replace(cfg.rollout, **roll))
    if min_role_count is not None:
        cfg = replace(cfg, vectors=replace(cfg.vectors, min_role_count=min_role_count))
    _execute(out, cfg, shard)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (resumable).")] = Path("demo-out"),
    roles: Annotated[int, typer.Option(help="Roles, drawn evenly across categories.")] = 60,
    prompts: Annotated[int, typer.Option(help="System prompts per role.")] = 2,
    questions: Annotated[int, typer.Option(help="Extraction questions.")] = 8,
    traits: Annotated[int, typer.Option(help="Traits (2 prompt pairs each).")] = 12,
    max_new_tokens: Annotated[int, typer.Option()] = 48,
    judge: Annotated[str, typer.Option(help="heuristic (offline), local or openai.")] = "heuristic",
    seed: Annotated[int, typer.Option()] = 0,
    model: ModelOpt = "smollm2-135m-instruct",
) -> None:
    """The whole method end to end on the embedded model, in minutes, ending in report.html.

    Example: persona-axis demo --out demo-out --roles 60 --questions 8
    """
    from .pipeline import demo_config

    cfg = demo_config(roles, prompts, questions, traits, max_new_tokens, judge, seed, model)
    _execute(out, cfg, "0/1")


@space_app.command("compare")
def space_compare(
    a: Annotated[Path, typer.Argument(help="First space directory (e.g. RUN/space).")],
    b: Annotated[Path, typer.Argument(help="Second space directory.")],
    layer: Annotated[int | None, typer.Option(help="Layer index into the spaces (default: A's best layer).")] = None,
    n_pcs: Annotated[int, typer.Option(help="Top PCs to match.")] = 3,
) -> None:
    """Cosines of the top PCs, of the axes and of per-role vectors between two spaces (JSON).

    Example: persona-axis space compare runs/base/space runs/instruct/space --layer 12
    """
    from .space import PersonaSpace

    sa, sb = PersonaSpace.load(a), PersonaSpace.load(b)
    result = sa.compare(sb, sa.best_layer() if layer is None else layer, n_pcs)
    print(json.dumps(result, indent=2))


@space_app.command("info")
def space_info(path: Annotated[Path, typer.Argument(help="Space directory.")]) -> None:
    """Layers, roles, best layer and the two ends of the axis (JSON).

    Example: persona-axis space info demo-out/space
    """
    from .space import PersonaSpace

    sp = PersonaSpace.load(path)
    best = sp.best_layer()
    ranking = sp.role_ranking(best)
    print(
        json.dumps(
            {
                "n_layers": sp.n_layers,
                "hidden_size": sp.hidden_size,
                "n_roles": len(sp.role_names),
                "n_traits": len(sp.trait_names),
                "best_layer_index": best,
                "cos_axis_pc1": sp.cos_axis_pc1()[best],
                "assistant_end": [r for r, _ in ranking[:10]],
                "far_end": [r for r, _ in ranking[-10:][::-1]],
                "meta": sp.meta,
            },
            indent=2,
        )
    )


@bench_app.command("hooks")
def bench_hooks_cmd(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")] = None,
    model: ModelOpt = "smollm2-135m-instruct",
    quick: Annotated[bool, typer.Option(help="Fewer tokens and repetitions (< 2 min on 2 cores).")] = False,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32",
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Tokens/s of greedy generation: plain vs Add on 8 layers vs Cap on 8 layers.

    Example: persona-axis bench hooks --quick --json benchmarks/results/hooks.json
    """
    from dataclasses import replace

    from .benchmarks import HooksBenchSpec, bench_hooks
    from .modeling import load_model

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise PersonaAxisError(f"--batch-sizes: {batch_sizes!r} is not a comma-separated list of integers") from None
    spec = replace(HooksBenchSpec.quick() if quick else HooksBenchSpec(), batch_sizes=sizes)
    lm = load_model(model, device=device, dtype=dtype)
    result = bench_hooks(lm, spec, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    _write_json(json_out, result)
    for key, value in result.items():
        if "overhead" in key:
            err.print(f"{key}: {value:+.1%}")


@bench_app.command("load")
def bench_load_cmd(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")] = None,
    model: ModelOpt = "smollm2-135m-instruct",
    cold: Annotated[
        bool, typer.Option(help="Use an empty temporary cache, so the first load converts the GGUF.")
    ] = False,
) -> None:
    """Seconds to load a model: first load (with GGUF conversion when --cold) vs a cached reload.

    Example: persona-axis bench load --cold --json benchmarks/results/load.json
    """
    import tempfile

    from .benchmarks import bench_load

    with tempfile.TemporaryDirectory(prefix="persona-axis-cache-") as tmp:
        result = bench_load(model, cold_cache=tmp if cold else None)
    _write_json(json_out, result)


@bench_app.command("extraction")
def bench_extraction_cmd(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")] = None,
    model: ModelOpt = "smollm2-135m-instruct",
    n: Annotated[int, typer.Option(help="Rollouts.")] = 64,
    batch_size: Annotated[int, typer.Option()] = 32,
    max_new_tokens: Annotated[int, typer.Option()] = 48,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Our single-pass capture vs generate-then-re-forward (the reference pipeline's way).

    Example: persona-axis bench extraction --json benchmarks/results/extraction.json
    """
    from .benchmarks import bench_extraction
    from .modeling import load_model

    lm = load_model(model, device=device, dtype=dtype)
    result = bench_extraction(lm, n, batch_size, max_new_tokens, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    _write_json(json_out, result)
    err.print(f"speedup {result['speedup']}x, min cosine {result['min_cosine']}")


@space_app.command("norms")
def space_norms(
    path: Annotated[Path, typer.Argument(help="Space directory to add residual norms to.")],
    model: ModelOpt = "smollm2-135m-instruct",
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Measure mean residual norms on everyday chat (the unit of --steer) and save them in the space.

    Example: persona-axis space norms demo-out/space
    """
    from .modeling import load_model
    from .space import PersonaSpace
    from .steering import add_residual_norms

    sp = PersonaSpace.load(path)
    lm = load_model(model, device=device, dtype=dtype)
    add_residual_norms(sp, lm, path)
    print(json.dumps({"residual_norms": [round(float(x), 3) for x in sp.extras["residual_norms"]]}))


@cap_app.command("calibrate")
def cap_calibrate(
    space: Annotated[Path, typer.Option(help="Persona space directory (RUN/space).")],
    layers: Annotated[str, typer.Option(help="Window A:B (B exclusive), A-B (inclusive) or a,b,c.")],
    out: Annotated[Path, typer.Option(help="Plan JSON to write.")],
    percentile: Annotated[float, typer.Option(help="p: the floor is where p% of the population lies above.")] = 25.0,
) -> None:
    """Floors from the space's calibration population (every rollout's projection on the axis).

    Example: persona-axis cap calibrate --space demo-out/space --layers 16:24 --percentile 25 --out p25.json
    """
    from .capping import calibrate, parse_layers
    from .space import PersonaSpace

    sp = PersonaSpace.load(space)
    plan = calibrate(sp, parse_layers(layers, sp.n_layers), percentile)
    plan.save(out)
    print(
        json.dumps(
            {
                "out": str(out),
                "layers": plan.layers,
                "floors": [round(f, 4) for f in plan.floors],
                "provenance": plan.provenance,
            },
            indent=2,
        )
    )


@cap_app.command("import")
def cap_import(
    file: Annotated[Path, typer.Argument(help="Reference capping config (.pt).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for one plan JSON per experiment.")],
) -> None:
    """Convert a reference capping config (negated-axis ceilings) into our floor plans. Never unpickles code.

    Example: persona-axis cap import capping_config.pt --out plans/
    """
    from .capping import import_reference_config

    plans = import_reference_config(file)
    written = {}
    for exp_id, plan in plans.items():
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in exp_id)
        plan.save(out_dir / f"{safe}.json")
        written[exp_id] = str(out_dir / f"{safe}.json")
    print(json.dumps({"plans": written}, indent=2))


def _telemetry(session, cap_plan) -> dict:
    caps = session.captures
    stats = session.cap_stats
    out = {}
    for key, res in caps.items():
        if not key.startswith("monitor.L") or res.projections is None:
            continue
        layer = key.split("L", 1)[1]
        proj = torch_cat_first(res.projections)
        entry = {
            "mean_projection": round(float(proj.mean()), 4) if proj.numel() else None,
            "min_projection": round(float(proj.min()), 4) if proj.numel() else None,
            "tokens": int(proj.numel()),
        }
        if f"cap.L{layer}" in stats:
            entry["floor"] = round(cap_plan.floors[cap_plan.layers.index(int(layer))], 4)
            entry["capped_fraction"] = round(stats[f"cap.L{layer}"].fraction, 4)
        out[f"L{layer}"] = entry
    return out


def torch_cat_first(parts):
    import torch

    return torch.cat([p[:, 0] for p in parts]) if parts else torch.zeros(0)


@app.command()
def chat(
    space: Annotated[Path, typer.Option(help="Persona space directory (RUN/space).")],
    model: ModelOpt = "smollm2-135m-instruct",
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="One-shot message; omit for interactive.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    steer: Annotated[
        float | None, typer.Option(help="Steering multiplier of the mean residual norm (+ = Assistant).")
    ] = None,
    coefficient: Annotated[float | None, typer.Option(help="Raw steering coefficient instead of --steer.")] = None,
    layer: Annotated[int | None, typer.Option(help="Steering layer (default: the space's best layer).")] = None,
    cap: Annotated[Path | None, typer.Option(help="Cap plan JSON (cap calibrate / cap import).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    force: Annotated[bool, typer.Option(help="Use a space or plan made for another fingerprint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {text, telemetry} instead of streaming.")] = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Chat with optional steering and capping; telemetry = axis projections after interventions.

    Example: persona-axis chat --space demo-out/space --steer -0.5 -p "Who are you?" --json
    """
    from transformers import TextStreamer

    from .capping import CapPlan
    from .generation import SamplingSpec, generate_batch
    from .interventions import InterventionPlan
    from .modeling import load_model
    from .space import PersonaSpace
    from .steering import monitor
    from .steering import steer as steer_plan

    sp = PersonaSpace.load(space)
    cap_plan = CapPlan.load(cap) if cap else None
    lm = load_model(model, device=device, dtype=dtype)
    sp.check_model(lm, force=force)
    plan = InterventionPlan()
    steer_layer = sp.best_layer() if layer is None else layer
    if steer is not None or coefficient is not None:
        plan = plan + steer_plan(sp, steer_layer, multiplier=steer, coefficient=coefficient)
    watched = {sp.best_layer()}
    if steer is not None or coefficient is not None:
        watched.add(steer_layer)
    if cap_plan is not None:
        cap_plan.check_model(lm, force=force)
        plan = plan + cap_plan.to_plan()
        watched.update(cap_plan.layers)
    plan = plan + monitor(sp, sorted(watched))
    spec = SamplingSpec(max_new_tokens=max_new_tokens, temperature=temperature, top_p=0.9, seed=seed)
    history = [{"role": "system", "content": system}] if system else []

    def turn(text: str) -> dict:
        history.append({"role": "user", "content": text})
        ids = lm.chat.prompt_ids(history)
        streamer = None if as_json else TextStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
        with lm.session(plan) as session:
            tokens, _ = generate_batch(lm, [ids], spec, streamer=streamer)
        reply = lm.tokenizer.decode(tokens[0], skip_special_tokens=True)
        history.append({"role": "assistant", "content": reply})
        return {"text": reply, "telemetry": _telemetry(session, cap_plan)}

    if prompt is not None:
        result = turn(prompt)
        if as_json:
            print(json.dumps(result, indent=2))
        else:
            tel = result["telemetry"]
            err.print(" ".join(f"{k}: mean {v['mean_projection']}" for k, v in tel.items()), style="dim")
        return
    err.print("interactive chat; an empty line or Ctrl-D ends it")
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            break
        if not text:
            break
        result = turn(text)
        if as_json:
            print(json.dumps(result))
        else:
            err.print(
                " ".join(f"{k}: mean {v['mean_projection']}" for k, v in result["telemetry"].items()), style="dim"
            )


@bench_app.command("capping")
def bench_capping_cmd(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")] = None,
    model: ModelOpt = "smollm2-135m-instruct",
    space: Annotated[
        Path | None, typer.Option(help="Space to calibrate a p25 plan from (else a random direction).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Fewer tokens and repetitions.")] = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Tokens/s plain vs capped over an 8-layer window, batch 1 and 32 (cap8_overhead_b1/_b32).

    Example: persona-axis bench capping --space demo-out/space --json benchmarks/results/capping.json
    """
    from .benchmarks import HooksBenchSpec, bench_capping
    from .modeling import load_model

    lm = load_model(model, device=device, dtype=dtype)
    spec = HooksBenchSpec.quick() if quick else HooksBenchSpec()
    result = bench_capping(lm, spec, space, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    _write_json(json_out, result)
    for key in ("cap8_overhead_b1", "cap8_overhead_b32"):
        err.print(f"{key}: {result[key]:+.1%}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except PersonaAxisError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors in standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
