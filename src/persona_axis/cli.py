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
