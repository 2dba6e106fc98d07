"""Latency cost model: the predicted forward time of a pruned shape on this device, for
`pruning.target_speedup` (ask for speed, not sparsity).

Model, for one stack of L layers with kept heads h_l, FFN neurons n_l and hidden size d:

    T(h, n, d) = G(d) + sum_l a(h_l, d) + sum_l b(n_l, d)

G(d) is the whole model at the minimal shape (1 head, `align` neurons per layer, hidden d):
embeddings, norms, residuals, the head and the minimal blocks. a(h, d) is what h heads add to a
layer over 1 head, b(n, d) what n neurons add over the minimum, both measured on the whole model
with every layer at that count (divided by the number of layers) and scaled together so that the
whole model at full counts comes out as measured (heads and neurons do not add up exactly).

Everything is timed on the run's device and dtype with the inputs of the speed measurement (32
real test inputs, padding included; random tokens when the run has none) on a small grid of h, n
and d, then interpolated linearly; the measured curves are made non-decreasing in every count, so
the model is monotone and the mask search's binary search stays exact. Profiling MiniLM on 2 CPU
cores takes about 15 s; the table is cached per device, dtype, model shape, input size and token
count.

The table predicts, it does not measure: heads and neurons of different layers, width-specific
kernels and the hidden size interact in ways a separable model misses (on MiniLM it predicted 2.00x
for a shape that measured 1.75x). `SpeedCalibration` closes the loop during the run: a few times in
the pruning window it builds the final plan's shape (a randomly initialised twin of the model, cut to
the plan's counts), times it against an unpruned twin in alternating rounds (`SpeedProbe`), and
corrects the latency budget.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import write_json
from .blocks import BlockInventory
from .errors import AptuneError
from .families import ModelFamily, family_for
from .shrink import first_k_plan, shrink_model
from .timing import blocked_ms, paired_ms

__all__ = [
    "LatencyError",
    "LatencyModel",
    "SpeedCalibration",
    "SpeedCheck",
    "SpeedProbe",
    "cache_dir",
    "latency_model",
    "measure",
    "random_inputs",
]

GRID_VERSION = 2
"""Bumped when the grid or the measurement changes, so older cached tables are not reused."""


class LatencyError(AptuneError):
    """The latency of this model cannot be modelled (e.g. an encoder-decoder)."""


@dataclass
class LatencyModel:
    """A measured latency table (ms) and its interpolation; a `search.PlanCost` in milliseconds."""

    layers: int
    hidden_grid: list[int]
    head_grid: list[int]
    neuron_grid: list[int]
    base: list[float]  # G(d) per hidden grid point
    heads: list[list[float]]  # a(h, d): [hidden point][head point], 0 at 1 head
    neurons: list[list[float]]  # b(n, d): [hidden point][neuron point], 0 at the fewest neurons
    profile_seconds: float = 0.0
    unit: str = "ms"

    def _at(self, i: int, heads: Sequence[int], neurons: Sequence[int]) -> float:
        """T at hidden grid point i."""
        a = np.interp(heads, self.head_grid, self.heads[i]).sum()
        b = np.interp(neurons, self.neuron_grid, self.neurons[i]).sum()
        return float(self.base[i] + a + b)

    def __call__(self, heads: Sequence[int], neurons: Sequence[int], hidden: int) -> float:
        """Predicted forward time (ms) of the model keeping these counts."""
        grid = self.hidden_grid
        if len(grid) == 1:
            return self._at(0, heads, neurons)
        j = int(np.clip(np.searchsorted(grid, hidden), 1, len(grid) - 1))
        lo, hi = grid[j - 1], grid[j]
        w = float(np.clip((hidden - lo) / (hi - lo), 0.0, 1.0))
        low = self._at(j - 1, heads, neurons)
        return low + w * (self._at(j, heads, neurons) - low)  # exactly monotone in w

    def block_costs(self, inventory: BlockInventory) -> list[float]:
        """ms of one head per attention module, one neuron per FFN, one hidden dim: the model's mean
        slope over the measured range at the inventory's hidden size (at least 1e-9)."""
        heads, neurons, d = list(inventory.heads), list(inventory.neurons), inventory.hidden
        h_low, h_top = self.head_grid[0], self.head_grid[-1]
        n_low, n_top = self.neuron_grid[0], self.neuron_grid[-1]
        h_slope = (self([h_top], [n_low], d) - self([h_low], [n_low], d)) / max(1, h_top - h_low)
        n_slope = (self([h_low], [n_top], d) - self([h_low], [n_low], d)) / max(1, n_top - n_low)
        d_low = self.hidden_grid[0]
        d_slope = (self(heads, neurons, d) - self(heads, neurons, d_low)) / max(1, d - d_low)
        per_block = [h_slope] * len(heads) + [n_slope] * len(neurons) + [d_slope]
        return [max(c, 1e-9) for c in per_block]


def cache_dir() -> Path:
    """Where measured tables are kept: `$APTUNE_CACHE_DIR/latency`, else `~/.cache/aptune/latency`."""
    root = os.environ.get("APTUNE_CACHE_DIR") or Path.home() / ".cache" / "aptune"
    return Path(root) / "latency"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} x{torch.get_num_threads()} threads"


def _cache_key(model: nn.Module, family: ModelFamily, inputs: dict[str, torch.Tensor], align: int) -> dict:
    inv = family.inventory(model)
    param = next(model.parameters())
    return {
        "version": GRID_VERSION,
        "model_type": model.config.model_type,
        "class": type(model).__name__,
        "heads": list(inv.heads),
        "neurons": list(inv.neurons),
        "hidden": inv.hidden,
        "head_dim": family.head_dim(model),
        "vocab": model.config.vocab_size,
        "dtype": str(param.dtype),
        "device": _device_name(param.device),
        "torch": torch.__version__,
        "inputs": list(inputs["input_ids"].shape),
        "tokens": int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else None,
        "align": align,
    }


def _grid(full: int, low: int, align: int, points: Sequence[float]) -> list[int]:
    """Counts at fractions of `full`, rounded down to `align` (at least `low`), ascending, unique."""
    values = {max(low, int(full * f) // align * align) for f in points} | {full}
    return sorted(values)


def _cut_to(twin: nn.Module, shapes: dict) -> nn.Module:
    """`twin` (weights do not matter for time) cut in place to the first blocks of every module up
    to the counts of `shapes` (as `shrink.shapes_dict` writes them), in eval mode."""
    family = family_for(twin)
    shrink_model(twin, first_k_plan(family.inventory(twin), shapes), family)
    return twin.eval()


def _shrunk(model: nn.Module, family: ModelFamily, heads: int, neurons: int, hidden: int) -> nn.Module:
    """A copy of `model` keeping the first `heads` heads and `neurons` neurons of every layer and the
    first `hidden` dims."""
    inv = family.inventory(model)
    shapes = {
        "heads": [heads] * len(inv.heads),
        "neurons": [neurons] * len(inv.neurons),
        "hidden_size": hidden,
    }
    return _cut_to(copy.deepcopy(model), shapes)


def random_inputs(model: nn.Module, batch: int, seq_len: int) -> dict[str, torch.Tensor]:
    """`batch` x `seq_len` random token ids without padding, on the model's device (when no real
    inputs are at hand)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=generator)
    ids = ids.to(next(model.parameters()).device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def measure(model: nn.Module, inputs: dict[str, torch.Tensor], align: int = 8) -> LatencyModel:
    """Time `model`'s shapes on `inputs` (a batch as the speed measurement feeds it, padding
    included) on its device and build the table (see the module docstring)."""
    family = family_for(model)
    inv = family.inventory(model)
    if family.layer_stack(model) is None or len(set(inv.heads)) != 1 or len(set(inv.neurons)) != 1:
        raise LatencyError(
            f"latency targets need one stack of equal layers; {family.name} models ({type(model).__name__}) "
            "are not supported: use pruning.target_sparsity"
        )
    started = time.perf_counter()
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    heads, neurons, d = inv.heads[0], inv.neurons[0], inv.hidden
    hidden_grid = _grid(d, align, align, (0.25, 0.5, 0.75))
    head_grid = sorted({1, max(1, heads // 4), max(1, heads // 2), max(1, 3 * heads // 4), heads})
    n_min = min(align, neurons)
    neuron_grid = _grid(neurons, n_min, align, (0.0, 0.25, 0.5, 0.75))
    table = LatencyModel(len(inv.heads), hidden_grid, head_grid, neuron_grid, [], [], [])
    layers = len(inv.heads)
    for hidden in hidden_grid:
        base = blocked_ms(_shrunk(model, family, 1, n_min, hidden), inputs)
        full = blocked_ms(_shrunk(model, family, heads, neurons, hidden), inputs)
        a = np.array([blocked_ms(_shrunk(model, family, h, n_min, hidden), inputs) for h in head_grid[1:]])
        b = np.array([blocked_ms(_shrunk(model, family, 1, n, hidden), inputs) for n in neuron_grid[1:]])
        a, b = np.concatenate([[0.0], a - base]) / layers, np.concatenate([[0.0], b - base]) / layers
        # heads and neurons do not add up exactly: scale both so that full counts come out as
        # measured, within 2x either way (a disturbed timing must not blow the curves up)
        parts = layers * (a[-1] + b[-1])
        scale = float(np.clip((full - base) / parts, 0.5, 2.0)) if parts > 0 else 1.0
        table.base.append(base)
        table.heads.append((a * scale).tolist())
        table.neurons.append((b * scale).tolist())
    _monotone(table)
    table.profile_seconds = time.perf_counter() - started
    return table


def _monotone(table: LatencyModel) -> None:
    """Make every measured curve non-decreasing in its count and in the hidden size (timing noise
    can break the order; the search needs it), with a(1) = b(min) = 0."""
    table.base = np.maximum.accumulate(np.asarray(table.base)).tolist()
    for rows in (table.heads, table.neurons):
        curves = np.maximum.accumulate(np.clip(np.asarray(rows), 0.0, None), axis=1)  # in the count
        curves = np.maximum.accumulate(curves - curves[:, :1], axis=0)  # in the hidden size
        rows[:] = curves.tolist()


def latency_model(
    model: nn.Module, inputs: dict[str, torch.Tensor], align: int = 8, cache: bool = True
) -> tuple[LatencyModel, bool]:
    """The latency table of `model` on `inputs`: from the cache when this device, dtype, shape and
    input size were measured before, else measured (and cached). Returns it and whether it was cached."""
    key = _cache_key(model, family_for(model), inputs, align)
    path = cache_dir() / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]}.json"
    if cache and path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return LatencyModel(**stored["table"]), True
    table = measure(model, inputs, align)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"key": key, "table": asdict(table)})
    return table, False


class SpeedProbe:
    """Measures the speed-up of a shape on this device: a twin of `model` (its class and config,
    random weights: they do not change the time) cut to the shape, against an unpruned twin, in
    alternating rounds on `inputs` (the batch the final speed measurement uses)."""

    def __init__(self, model: nn.Module, inputs: dict[str, torch.Tensor], budget_s: float = 8.0):
        param = next(model.parameters())
        self.model_class, self.config = type(model), copy.deepcopy(model.config)
        self.dtype, self.device = param.dtype, param.device
        self.inputs = {k: v.to(self.device) for k, v in inputs.items()}
        self.budget_s = budget_s

    def build(self, shapes: dict | None = None) -> nn.Module:
        """A twin in eval mode: unpruned, or cut to `shapes` (heads and neurons per module and
        `hidden_size`, as `shrink.shapes_dict` writes them)."""
        twin = self.model_class(copy.deepcopy(self.config)).to(self.device, self.dtype).eval()
        return twin if shapes is None else _cut_to(twin, shapes)

    def speedup(self, shapes: dict) -> float:
        """Unpruned time over the time of `shapes` (4 alternating rounds, about `budget_s`)."""
        dense_ms, pruned_ms = paired_ms(
            self.build(), self.build(shapes), self.inputs, rounds=4, budget_s=self.budget_s
        )
        return dense_ms / pruned_ms


@dataclass(frozen=True)
class SpeedCheck:
    """One measurement of the planned final shape during the run."""

    step: int
    retain: float  # the latency budget the plan was made for (fraction of the dense prediction)
    predicted: float  # the latency model's speed-up of the plan
    measured: float  # the probe's
    scale: float  # the budget scale after this check


class SpeedCalibration:
    """The latency budget of `pruning.target_speedup`, corrected by measurement.

    The final budget is `scale / target` of the unpruned model's predicted latency. `check` measures
    the plan made for that budget; within `tolerance` of the request it keeps the budget, else it
    picks the next one. Checks made at the same step (the same scores, so the same plan for a budget)
    are combined: once they bracket the request, the next budget is interpolated in log space
    between the largest measured fast enough and the smallest measured too slow (the measured
    speed-up falls as the budget grows, but not in proportion: which blocks come back changes with
    the budget). Otherwise the budget moves by measured / asked, at most `step_limit`-fold (checks
    of earlier steps planned with other scores and are not combined). It never leaves [`floor`, 1],
    `floor` being the smallest plan the pruning options allow as a fraction of the dense prediction.
    """

    def __init__(
        self,
        probe: SpeedProbe | None,
        target: float,
        floor: float,
        tolerance: float = 0.03,
        step_limit: float = 1.5,
    ):
        self.probe, self.target, self.floor = probe, target, floor
        self.tolerance, self.step_limit = tolerance, step_limit
        self.scale = 1.0
        self.checks: list[SpeedCheck] = []

    @property
    def retain(self) -> float:
        """The final latency budget as a fraction of the unpruned model's predicted latency."""
        return self.scale / self.target

    def met(self, check: SpeedCheck) -> bool:
        """Whether `check` measured the request within the tolerance."""
        return abs(check.measured / self.target - 1) <= self.tolerance

    def check(self, step: int, shapes: dict, predicted: float) -> SpeedCheck:
        """Measure the speed-up of `shapes` (the plan for `retain`) and choose the next budget."""
        measured, retain = self.probe.speedup(shapes), self.retain
        if abs(measured / self.target - 1) > self.tolerance:
            points = [(c.retain, c.measured) for c in self.checks if c.step == step] + [(retain, measured)]
            self.scale = float(np.clip(self._next(points), self.floor, 1.0)) * self.target
        done = SpeedCheck(step, retain, predicted, measured, self.scale)
        self.checks.append(done)
        return done

    def _next(self, points: list[tuple[float, float]]) -> float:
        """The next budget from (budget, measured speed-up) points of one step, the last one latest."""
        fast = [p for p in points if p[1] >= self.target]
        slow = [p for p in points if p[1] < self.target]
        if fast and slow:
            (r_fast, s_fast), (r_slow, s_slow) = max(fast), min(slow)
            if r_fast < r_slow and s_fast > s_slow:
                w = math.log(s_fast / self.target) / math.log(s_fast / s_slow)
                return r_fast * (r_slow / r_fast) ** w
        retain, measured = points[-1]
        return retain * float(np.clip(measured / self.target, 1 / self.step_limit, self.step_limit))

    def state_dict(self) -> dict[str, object]:
        """The scale and the checks so far (JSON data)."""
        return {"scale": self.scale, "checks": [asdict(c) for c in self.checks]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Take the state of `state_dict()`."""
        self.scale = float(state["scale"])
        self.checks = [SpeedCheck(**c) for c in state["checks"]]
