"""Report of a finished APT run: plots of the pruning/tuning trajectory plus a Markdown summary.

`write_report(run_dir)` reads `history.jsonl` and `metrics.json` from the run directory and writes
`retained.png`, `metric.png`, `shapes.png`, `ranks.png`, `memory.png` and `report.md` next to them,
each atomically.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from ..atomic import write_bytes, write_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"
PLOT_NAMES = ("retained", "metric", "shapes", "ranks", "memory")

_ADAPTER_NAME = re.compile(r"^(?:(.+)\.)?layer\.(\d+)\.(.+)$")

History = list[dict[str, Any]]
Metrics = dict[str, Any]


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write the plots and `report.md` of the finished run in `run_dir`; returns the path of `report.md`.

    Raises `FileNotFoundError` when `history.jsonl` or `metrics.json` is missing. Without matplotlib the
    report is written without plots and says so.
    """
    out = Path(run_dir)
    history = load_history(out / HISTORY_FILE)
    metrics = _load_metrics(out / METRICS_FILE)
    plotted = _write_plots(out, history, metrics)
    report = out / "report.md"
    write_text(report, render_markdown(history, metrics, plotted))
    return report


def load_history(path: str | os.PathLike) -> History:
    """The logged steps of `history.jsonl`, one dict per non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run history not found: {path} (is this a finished run directory?)")
    history = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON object: {err}") from err
    return history


def _load_metrics(path: Path) -> Metrics:
    if not path.is_file():
        raise FileNotFoundError(f"run metrics not found: {path} (is this a finished run directory?)")
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- data


def _series(history: History, *path: str) -> list[tuple[int, Any]]:
    """(step, value) for every history line where the nested key `path` is present and not null."""
    points = []
    for index, line in enumerate(history):
        value: Any = line
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            points.append((line.get("step", index), value))
    return points


def _shape(metrics: Metrics, history: History, field: str, initial: bool) -> Any:
    """A shape field (`heads`, `neurons`, `hidden_size`) before or after pruning.

    Taken from `initial_shapes` / `shapes` of the metrics, else from the first / last history line.
    """
    value = (metrics.get("initial_shapes" if initial else "shapes") or {}).get(field)
    if value is None:
        logged = _series(history, "hidden" if field == "hidden_size" else field)
        if logged:
            value = logged[0 if initial else -1][1]
    return value


def _layer_ranks(ranks: dict[str, int]) -> dict[tuple[str, str], int]:
    """{(layer, component): rank} from adapter names: "layer.3.attention.query" -> ("3",
    "attention.query"); encoder-decoders name their stack: "decoder.layer.1.cross_attention.value"
    -> ("decoder 1", "cross_attention.value"). Layers keep the order of the names."""
    parsed = {}
    for name, rank in ranks.items():
        match = _ADAPTER_NAME.search(name)
        if match:
            stack, index, component = match.groups()
            parsed[f"{stack} {index}" if stack else index, component] = rank
    return parsed


def _final_ranks(history: History) -> dict[tuple[str, str], int]:
    logged = _series(history, "ranks")
    return _layer_ranks(logged[-1][1]) if logged else {}


# ------------------------------------------------------------------------------------------- plots


def _write_plots(out: Path, history: History, metrics: Metrics) -> bool:
    """Render the PNGs into `out`; False (nothing written) when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    for name in PLOT_NAMES:
        draw, size = _PLOTS[name]
        fig = Figure(figsize=size, dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig, history, metrics)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        write_bytes(out / f"{name}.png", buffer.getvalue())
    return True


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _plot_lines(ax: Axes, history: History, series: Sequence[tuple[tuple[str, ...], str]]) -> bool:
    """Plot each (key path, label) series over steps; False and a placeholder when none was logged."""
    drawn = False
    for path, label in series:
        points = _series(history, *path)
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker=".", label=label)
            drawn = True
    if drawn:
        ax.legend()
        ax.grid(alpha=0.3)
    else:
        _no_data(ax, "nothing logged: " + ", ".join(label for _, label in series))
    return drawn


def _draw_retained(fig: Figure, history: History, metrics: Metrics) -> None:
    ax = fig.subplots()
    series = [
        (("retain_target",), "target"),
        (("retained",), "effective (nonzero mask)"),
        (("physical",), "physically present"),
    ]
    if _plot_lines(ax, history, series):
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("step")
        ax.set_ylabel("retained fraction of prunable params")
    ax.set_title("Retained parameters")


def _draw_metric(fig: Figure, history: History, metrics: Metrics) -> None:
    top, bottom = fig.subplots(2, 1, sharex=True)
    if metrics.get("metric") == "perplexity":
        evals = [(("eval", "perplexity"), "perplexity")]
    else:
        evals = [(("eval", "accuracy"), "accuracy"), (("eval", "macro_f1"), "macro-F1")]
    if _plot_lines(top, history, evals):
        top.set_ylabel("validation " + ("perplexity" if metrics.get("metric") == "perplexity" else "score"))
    top.set_title("Evaluation")
    distilled = any(line.get("mu", 0) > 0 for line in history)  # else loss and task loss coincide
    losses = [(("loss",), "loss (distillation mix)"), (("task_loss",), "task loss")] if distilled else []
    if _plot_lines(bottom, history, losses or [(("loss",), "loss")]):
        bottom.set_xlabel("step")
        bottom.set_ylabel("training loss (mean since the previous point)")


def _edges(centers: Sequence[float]) -> np.ndarray:
    """Cell edges around sorted cell centres (unit width for a single centre)."""
    x = np.asarray(centers, dtype=float)
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def _draw_shapes(fig: Figure, history: History, metrics: Metrics) -> None:
    for ax, field in zip(fig.subplots(1, 2), ("heads", "neurons"), strict=True):
        logged = _series(history, field)
        initial = _shape(metrics, history, field, initial=True)
        if not logged or not initial:
            _no_data(ax, f"no {field} logged")
            continue
        fraction = np.array(
            [[k / max(i, 1) for k, i in zip(kept, initial, strict=True)] for _, kept in logged]
        )
        steps = [step for step, _ in logged]
        mesh = ax.pcolormesh(
            _edges(steps), np.arange(len(initial) + 1) - 0.5, fraction.T, vmin=0.0, vmax=1.0, cmap="viridis"
        )
        fig.colorbar(mesh, ax=ax, label="kept fraction")
        ax.set_yticks(range(len(initial)))
        ax.set_xlabel("step")
        ax.set_ylabel("layer")
        ax.set_title(f"{field} kept (of {max(initial)} per layer)")


def _draw_ranks(fig: Figure, history: History, metrics: Metrics) -> None:
    ax = fig.subplots()
    final = _final_ranks(history)
    if not final:
        _no_data(ax, "no adapter ranks logged")
        return
    initial = _layer_ranks(_series(history, "ranks")[0][1])
    layers = list(dict.fromkeys(layer for layer, _ in final))
    components = list(dict.fromkeys(component for _, component in final))
    width = 0.8 / len(components)
    marks_x, marks_y = [], []
    for j, component in enumerate(components):
        offset = (j - (len(components) - 1) / 2) * width
        xs = [i + offset for i in range(len(layers))]
        ax.bar(xs, [final.get((layer, component), 0) for layer in layers], width, label=component)
        for x, layer in zip(xs, layers, strict=True):
            if (layer, component) in initial:
                marks_x.append(x)
                marks_y.append(initial[layer, component])
    centers = np.asarray(marks_x)
    ax.hlines(marks_y, centers - width / 2, centers + width / 2, colors="black", lw=2, label="initial rank")
    ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers[0]) > 3 else 0)
    ax.set_xlabel("layer")
    ax.set_ylabel("adapter rank")
    ax.set_title("Adapter ranks at the end of training")
    ax.legend(fontsize="small")


def _draw_memory(fig: Figure, history: History, metrics: Metrics) -> None:
    ax = fig.subplots()
    series = [(("memory_mb",), "in use (CPU: resident set; GPU: allocated)"),
              (("memory_reserved_mb",), "reserved by the CUDA allocator"),
              (("step_memory_mb",), "a step's tensors (CPU: at the end of forward; GPU: peak)")]  # fmt: skip
    if _plot_lines(ax, history, series):
        for i, step in enumerate(line["step"] for line in history if line.get("event") == "shrink"):
            ax.axvline(step, color="grey", ls=":", lw=1, label="shrink" if i == 0 else None)
        ax.legend(fontsize="small")
        ax.set_xlabel("step")
        ax.set_ylabel("MB")
    ax.set_title("Memory during training")


_PLOTS: dict[str, tuple[Callable[[Figure, History, Metrics], None], tuple[float, float]]] = {
    "retained": (_draw_retained, (7.0, 4.0)),
    "metric": (_draw_metric, (7.0, 6.0)),
    "shapes": (_draw_shapes, (12.0, 4.5)),
    "ranks": (_draw_ranks, (9.0, 4.5)),
    "memory": (_draw_memory, (7.0, 4.0)),
}


# ---------------------------------------------------------------------------------------- markdown


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


def _pair(mapping: Metrics, first: str, second: str, spec: str, unit: str) -> str:
    """Two entries of `mapping` as "first / second", each formatted with `spec` and `unit`."""
    return f"{_fmt(mapping.get(first), spec, unit)} / {_fmt(mapping.get(second), spec, unit)}"


def _get(mapping: Metrics, *path: str) -> Any:
    value: Any = mapping
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _before_after(before: Any, after: Any) -> str:
    text = f"{_fmt(before, ',')} → {_fmt(after, ',')}"
    if before and after is not None:
        text += f" ({after / before:.1%} kept)"
    return text


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.1f} s ({timedelta(seconds=round(seconds))})"


def _first_last(history: History, key: str) -> str:
    """A memory figure at the first and the last history line that has it (see `memory.png`)."""
    levels = [line[key] for line in history if key in line]
    if not levels:
        return "n/a"
    return f"{levels[0]:,.0f} MB → {levels[-1]:,.0f} MB ({levels[-1] / levels[0] - 1:+.0%})"


def _summary_rows(metrics: Metrics, history: History) -> list[tuple[str, str]]:
    params = metrics.get("params") or {}
    inference = metrics.get("inference") or {}
    setting = ", ".join(
        f"{label} {inference[key]}"
        for key, label in (("batch_size", "batch"), ("seq_len", "seq len"), ("device", "on"))
        if inference.get(key) is not None
    )
    latency = _pair(inference, "dense_ms", "pruned_ms", ".2f", " ms")
    metric = metrics.get("metric", "accuracy")
    speed = metrics.get("latency_model") or {}
    asked = [("speed-up asked / predicted", _pair(speed, "target_speedup", "predicted_speedup", ".2f", "x"))]
    if checks := speed.get("speed_checks"):
        measured = " → ".join(f"{c['measured']:.2f}x" for c in checks)
        budget = f"budget x{speed['budget_scale']:.2f}"
        asked.append(("speed checks of the plan (measured)", f"{measured}; {budget}"))
    return [
        (f"test {metric}", _fmt(_get(metrics, "test", metric), ".4f")),
        (f"validation {metric}", _fmt(_get(metrics, "validation", metric), ".4f")),
        ("sparsity", _fmt(metrics.get("sparsity"), ".2%")),
        ("total params", _before_after(params.get("total_before"), params.get("total_after"))),
        ("prunable params", _before_after(params.get("prunable_before"), params.get("prunable_after"))),
        ("train time", _duration(metrics.get("train_seconds"))),
        ("peak memory", _fmt(metrics.get("peak_memory_mb"), ",.0f", " MB")),
        ("memory in use, first → last logged step", _first_last(history, "memory_mb")),
        ("a step's tensor memory, first → last measured", _first_last(history, "step_memory_mb")),
        ("inference dense / pruned", latency + (f" ({setting})" if setting else "")),
        ("speed-up measured / ideal", _pair(inference, "speedup", "ideal_speedup", ".2f", "x")),
        *(asked if speed else []),
    ]


def _layer_rows(history: History, metrics: Metrics) -> list[list[str]]:
    shapes = {
        (field, initial): _shape(metrics, history, field, initial) or []
        for field in ("heads", "neurons")
        for initial in (True, False)
    }
    ranks = _final_ranks(history)
    indices = [int(layer) + 1 for layer, _ in ranks if layer.isdigit()]
    n_layers = max([len(values) for values in shapes.values()] + indices)

    def kept(field: str, layer: int) -> str:
        final, initial = shapes[field, False], shapes[field, True]
        return f"{_fmt(_at(final, layer), 'd')} / {_fmt(_at(initial, layer), 'd')}"

    rows = []
    for layer in range(n_layers):
        layer_ranks = ", ".join(f"{c} {rank}" for (name, c), rank in ranks.items() if name == str(layer))
        rows.append([str(layer), kept("heads", layer), kept("neurons", layer), layer_ranks or "n/a"])
    return rows


def _module_tables(history: History, metrics: Metrics) -> str:
    """Encoder-decoders: kept heads per attention module, kept neurons per FFN, ranks per layer."""
    shapes, initial = metrics.get("shapes") or {}, metrics.get("initial_shapes") or {}

    def rows(field: str, labels: str) -> list[list[str]]:
        kept, full = shapes.get(field) or [], initial.get(field) or []
        names = shapes.get(labels) or [str(i) for i in range(len(kept))]
        return [
            [name, f"{_fmt(_at(kept, i), 'd')} / {_fmt(_at(full, i), 'd')}"] for i, name in enumerate(names)
        ]

    per_layer: dict[str, list[str]] = {}
    for (layer, component), rank in _final_ranks(history).items():
        per_layer.setdefault(layer, []).append(f"{component} {rank}")
    tables = [
        _table(("attention module", "heads kept / initial"), rows("heads", "attention_labels")),
        _table(("FFN", "neurons kept / initial"), rows("neurons", "ffn_labels")),
    ]
    if per_layer:
        tables.append(_table(("layer", "adapter ranks"), [[k, ", ".join(v)] for k, v in per_layer.items()]))
    return "\n\n".join(tables)


def _shapes_section(history: History, metrics: Metrics) -> str:
    shapes = metrics.get("shapes") or {}
    if shapes.get("attention_labels", []) != shapes.get("ffn_labels", []):
        return _module_tables(history, metrics)
    return _table(
        ("layer", "heads kept / initial", "neurons kept / initial", "adapter ranks"),
        _layer_rows(history, metrics),
    )


def _at(values: Sequence[int], index: int) -> int | None:
    return values[index] if index < len(values) else None


def render_markdown(history: History, metrics: Metrics, plotted: bool = True) -> str:
    """The text of `report.md` for a run; `plotted` says whether the PNGs were written next to it."""
    title = f"# APT report: {metrics.get('task', 'unknown task')} / {metrics.get('model', 'unknown model')}"
    hidden_before = _shape(metrics, history, "hidden_size", initial=True)
    hidden_after = _shape(metrics, history, "hidden_size", initial=False)
    if plotted:
        plots = "\n\n".join(f"![{name}]({name}.png)" for name in PLOT_NAMES)
    else:
        plots = "_plots skipped: pip install matplotlib_"
    config = yaml.safe_dump(metrics.get("config") or {}, sort_keys=False)
    sections = [
        title,
        "## Summary\n\n" + _table(("metric", "value"), _summary_rows(metrics, history)),
        "## Final shapes\n\n" + _shapes_section(history, metrics),
        f"Hidden size: {_before_after(hidden_before, hidden_after)}",
        "## Training curves\n\n" + plots,
        f"## Config\n\n```yaml\n{config}```",
    ]
    return "\n\n".join(sections) + "\n"
