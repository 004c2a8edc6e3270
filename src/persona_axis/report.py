"""One self-contained HTML report (interactive plotly figures, inlined) plus static PNGs beside it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import torch

from .space import PersonaSpace
from .store import atomic_write_text


def _figures(space: PersonaSpace, summary: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go

    layers = summary["layers"]
    best_i = layers.index(summary["best_layer"])
    figs: dict[str, Any] = {}

    cum = space.pca_explained[best_i].cumsum(0).tolist()
    ratio = space.pca_explained[best_i].tolist()
    f = go.Figure()
    f.add_bar(x=[f"PC{i + 1}" for i in range(len(ratio))], y=ratio, name="variance explained")
    f.add_scatter(x=[f"PC{i + 1}" for i in range(len(cum))], y=cum, name="cumulative", mode="lines+markers")
    f.update_layout(title=f"Variance explained by role PCs (layer {layers[best_i]})", yaxis_tickformat=".0%")
    figs["variance"] = f

    roles, default = space.pc_scores(best_i)
    proj = space.project(space.role_vectors[:, best_i], best_i).tolist()
    k = roles.shape[1]
    z = roles[:, 2].tolist() if k > 2 else [0.0] * roles.shape[0]
    f = go.Figure()
    f.add_scatter3d(
        x=roles[:, 0].tolist(),
        y=roles[:, 1].tolist() if k > 1 else [0.0] * roles.shape[0],
        z=z,
        mode="markers",
        text=[f"{n} ({c})" for n, c in zip(space.role_names, space.role_categories, strict=True)],
        marker={"size": 4, "color": proj, "colorscale": "RdBu", "colorbar": {"title": "axis proj."}},
        name="roles",
    )
    f.add_scatter3d(
        x=[float(default[0])],
        y=[float(default[1]) if k > 1 else 0.0],
        z=[float(default[2]) if k > 2 else 0.0],
        mode="markers+text",
        text=["Assistant (default)"],
        marker={"size": 9, "color": "black", "symbol": "diamond"},
        name="default",
    )
    f.update_layout(title=f"Persona space, PCs 1-3 (layer {layers[best_i]})", height=650)
    figs["pca3d"] = f

    f = go.Figure()
    f.add_scatter(x=layers, y=[abs(c) for c in summary["cos_axis_pc1"]], mode="lines+markers", name="|cos(axis, PC1)|")
    f.add_scatter(
        x=layers, y=summary["default_pc1_position"], mode="lines+markers", name="default: distance from PC1 end"
    )
    f.update_layout(title="Axis vs PC1 by layer", xaxis_title="layer (output of block)", yaxis_range=[0, 1])
    figs["cos_by_layer"] = f

    ranking = space.role_ranking(best_i)
    shown = ranking[:15] + ranking[-15:] if len(ranking) > 30 else ranking
    f = go.Figure()
    f.add_bar(y=[r for r, _ in shown][::-1], x=[v for _, v in shown][::-1], orientation="h")
    f.update_layout(title="Roles along the Assistant Axis (top and bottom 15)", height=720, xaxis_title="projection")
    figs["role_ranking"] = f

    traits = space.trait_ranking(best_i)
    if traits:
        shown = traits[:15] + traits[-15:] if len(traits) > 30 else traits
        f = go.Figure()
        f.add_bar(y=[t for t, _ in shown][::-1], x=[v for _, v in shown][::-1], orientation="h")
        f.update_layout(title="Traits by cosine with the axis", height=720, xaxis_title="cosine")
        figs["trait_ranking"] = f

    hist = summary["score_histogram"]
    f = go.Figure()
    f.add_bar(x=list(hist), y=list(hist.values()))
    f.update_layout(title=f"Judge scores ({summary['judge']})", xaxis_title="score (None = not scored)")
    figs["scores"] = f
    return figs


def _pngs(space: PersonaSpace, summary: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    layers = summary["layers"]
    best_i = layers.index(summary["best_layer"])
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ratio = space.pca_explained[best_i].numpy()
    ax.bar(range(1, len(ratio) + 1), ratio)
    ax.plot(range(1, len(ratio) + 1), ratio.cumsum(), "o-", color="k")
    ax.set(xlabel="PC", ylabel="variance explained", title=f"layer {layers[best_i]}")
    written.append(_save(fig, out / "variance.png"))

    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    roles, default = space.pc_scores(best_i)
    proj = space.project(space.role_vectors[:, best_i], best_i).numpy()
    cols = [roles[:, i].numpy() if roles.shape[1] > i else torch.zeros(roles.shape[0]).numpy() for i in range(3)]
    sc = ax.scatter(*cols, c=proj, cmap="RdBu", s=14)
    d = [float(default[i]) if roles.shape[1] > i else 0.0 for i in range(3)]
    ax.scatter(*d, c="k", marker="D", s=60, label="Assistant (default)")
    fig.colorbar(sc, label="axis projection", shrink=0.6)
    ax.set(xlabel="PC1", ylabel="PC2", zlabel="PC3", title="persona space")
    ax.legend()
    written.append(_save(fig, out / "pca3d.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(layers, [abs(c) for c in summary["cos_axis_pc1"]], "o-", label="|cos(axis, PC1)|")
    ax.plot(layers, summary["default_pc1_position"], "s-", label="default: distance from PC1 end")
    ax.set(xlabel="layer", ylim=(0, 1))
    ax.legend()
    written.append(_save(fig, out / "cos_by_layer.png"))

    ranking = space.role_ranking(best_i)
    shown = ranking[:15] + ranking[-15:] if len(ranking) > 30 else ranking
    fig, ax = plt.subplots(figsize=(6, 8))
    ax.barh([r for r, _ in shown][::-1], [v for _, v in shown][::-1])
    ax.set(xlabel="projection on the axis", title="roles along the Assistant Axis")
    written.append(_save(fig, out / "role_ranking.png"))

    traits = space.trait_ranking(best_i)
    if traits:
        shown = traits[:15] + traits[-15:] if len(traits) > 30 else traits
        fig, ax = plt.subplots(figsize=(6, 8))
        ax.barh([t for t, _ in shown][::-1], [v for _, v in shown][::-1])
        ax.set(xlabel="cosine with the axis", title="traits")
        written.append(_save(fig, out / "trait_ranking.png"))

    fig, ax = plt.subplots(figsize=(5, 3))
    hist = summary["score_histogram"]
    ax.bar(list(hist), list(hist.values()))
    ax.set(xlabel="judge score", ylabel="responses", title=str(summary["judge"]))
    written.append(_save(fig, out / "scores.png"))
    return written


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_report(run_dir: Path, space: PersonaSpace, summary: dict[str, Any], settings: dict[str, Any]) -> Path:
    import plotly.io as pio

    figs = _figures(space, summary)
    parts = []
    for i, (name, fig) in enumerate(figs.items()):
        parts.append(
            f'<section id="{name}">' + pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0)) + "</section>"
        )
    _pngs(space, summary, Path(run_dir) / "figures")
    note = ""
    if summary.get("judge_approximate"):
        note = (
            '<p class="warn"><b>Approximate judge.</b> Scores come from the offline heuristic judge '
            "(AI self-identification and refusal patterns), not from an LLM judge; role filtering is approximate "
            "and trait pairs are not filtered.</p>"
        )
    head = {
        k: summary[k]
        for k in ("model", "n_layers", "n_roles", "n_rollouts", "best_layer", "dims_for_70pct", "judge")
        if k in summary
    }
    best_i = summary["layers"].index(summary["best_layer"])
    head["|cos(axis, PC1)| at best layer"] = round(abs(summary["cos_axis_pc1"][best_i]), 3)
    head["default distance from PC1 end"] = round(summary["default_pc1_position"][best_i], 3)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in head.items())
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>persona-axis report: {html.escape(str(summary["model"]))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.warn{{background:#fff4d6;padding:8px;border-left:4px solid #e0a800}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style>
</head><body>
<h1>Persona space of {html.escape(str(summary["model"]))}</h1>
{note}
<table>{rows}</table>
<p>Most Assistant-like roles: {html.escape(", ".join(summary["assistant_end_roles"]))}</p>
<p>Far end: {html.escape(", ".join(summary["far_end_roles"]))}</p>
{"".join(parts)}
<h2>Run settings</h2><pre>{html.escape(json.dumps(settings, indent=2))}</pre>
</body></html>
"""
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, doc)
    return path
