"""Physical removal of pruned blocks, and save / load of pruned models.

`shrink_model` cuts heads, neurons and hidden dimensions out of every weight (adapters included) in
place: each Parameter object survives with smaller data, so an optimizer keeps its references and
`slice_optimizer_state` can cut its state the same way. `save_pruned` writes safetensors + JSON;
`load_pruned` rebuilds the per-layer shapes from that JSON before loading the weights.
`own_weights` first moves weights out of a memory-mapped checkpoint, so that a cut frees them.

Stock transformers reads only `config.json`, whose global fields describe every layer alike. An
export that is not a stock checkpoint (`is_stock`) therefore carries `PER_LAYER_NOTE` in its
`model_type` and per-layer fields: `AutoConfig` / `AutoModel*.from_pretrained` then stop at an
unknown model type and a concrete class (`BertForSequenceClassification.from_pretrained`) at a
field that is not a number, both quoting the note, which names `aptune.load_pruned`; the real
values live in `aptune.json` and `config.json`'s `aptune` block. `AutoTokenizer` still loads from
the directory (it falls back to a generic config when the model type is unknown).
"""

from __future__ import annotations

import bisect
import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_model, save_file
from torch import nn

from .adapter import AptLinear, merge_adapters
from .atomic import staged_file, write_json, write_text
from .blocks import BlockInventory, MaskPlan
from .errors import AptuneError
from .families import ModelFamily, family_for

FORMAT = "aptune.pruned"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "aptune.json"
PER_LAYER_NOTE = "aptune-pruned: shapes per layer in aptune.json, load with aptune.load_pruned(model_dir)"
"""What `config.json` holds instead of `model_type` and per-layer fields when stock transformers
cannot load an export."""
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


class ModelDirError(AptuneError):
    """A directory that should hold a pruned model does not, or is damaged."""


@dataclass
class SliceRecord:
    """One in-place cut: `param` kept `index` along `dim`; its shape was `old_shape`."""

    param: nn.Parameter
    dim: int
    index: torch.Tensor
    old_shape: torch.Size


def _file_mappings() -> list[tuple[int, int]]:
    """Address ranges [start, end) of this process's file-backed memory maps, sorted (Linux's
    /proc/self/maps; empty where there is none)."""
    try:
        lines = Path("/proc/self/maps").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    return sorted(ranges)


def own_weights(model: nn.Module) -> int:
    """Copy every CPU parameter and buffer of `model` that lives in a memory-mapped file into the
    process's own memory; returns the bytes copied.

    `from_pretrained` loads a safetensors checkpoint on a CPU as views of the file's memory map,
    and the map, resident once a forward pass has read it, stays until the last view is gone. A cut
    would then free nothing: the sliced copies come on top of the whole mapped checkpoint (on
    SmolLM2-135M, 513 MB of it). Owned weights are freed by the cut that replaces them. Linux
    only (elsewhere nothing is copied); a no-op for weights on an accelerator.
    """
    ranges = _file_mappings()
    if not ranges:
        return 0
    starts = [start for start, _ in ranges]
    copied = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.device.type != "cpu":
            continue
        ptr = t.untyped_storage().data_ptr()
        i = bisect.bisect_right(starts, ptr) - 1
        if i >= 0 and ptr < ranges[i][1]:
            t.data = t.data.clone()
            copied += t.numel() * t.element_size()
    return copied


def slice_param(param: nn.Parameter, dim: int, index: torch.Tensor, records: list[SliceRecord]) -> None:
    """Keep `index` of `param` along `dim` in place (gradient too) and record the cut."""
    old_shape = param.shape
    index = index.to(param.device)
    param.data = param.data.index_select(dim, index).contiguous()
    if param.grad is not None:
        param.grad = param.grad.index_select(dim, index).contiguous()
    records.append(SliceRecord(param, dim, index, old_shape))


def slice_linear(module: nn.Module, index: torch.Tensor, side: str, records: list[SliceRecord]) -> None:
    """Keep output rows (`side="out"`) or input columns (`side="in"`) of a plain or adapted linear."""
    base = module.base if isinstance(module, AptLinear) else module
    if side == "out":
        slice_param(base.weight, 0, index, records)
        if base.bias is not None:
            slice_param(base.bias, 0, index, records)
        if isinstance(module, AptLinear):
            slice_param(module.lora_B, 0, index, records)
        base.out_features = index.numel()
    else:
        slice_param(base.weight, 1, index, records)
        if isinstance(module, AptLinear):
            slice_param(module.lora_A, 1, index, records)
        base.in_features = index.numel()


def _slice_norm(norm: nn.Module, index: torch.Tensor, records: list[SliceRecord]) -> None:
    for p in (norm.weight, getattr(norm, "bias", None)):
        if p is not None:
            slice_param(p, 0, index, records)
    if hasattr(norm, "normalized_shape"):
        norm.normalized_shape = (index.numel(),)


def _head_channels(keep: torch.Tensor, width: int) -> torch.Tensor:
    units = keep.nonzero().flatten()  # (n_kept,)
    return (units[:, None] * width + torch.arange(width, device=units.device)).flatten()  # (n_kept * width,)


def _ensure_base_config(model: nn.Module) -> None:
    if getattr(model.config, "aptune", None) is None:
        model.config.aptune = {"base_config": model.config.to_dict()}


@torch.no_grad()
def shrink_model(model: nn.Module, plan: MaskPlan, family: ModelFamily | None = None) -> list[SliceRecord]:
    """Remove every block that `plan` does not keep, in place; returns the cuts made.

    The plan's masks must match the model's current inventory. Heads and neurons are cut first,
    then the hidden dimension from embeddings, norms, readers and writers; the config is updated.
    No autograd graph that uses the model may be alive (autograd caches parameter shapes).
    """
    family = family or family_for(model)
    _check_plan(family.inventory(model), plan)
    _ensure_base_config(model)
    records: list[SliceRecord] = []
    family.prepare(model)
    unit = family.head_unit(model)
    for i, sites in enumerate(family.attention_sites(model)):
        keep = plan.heads[i]
        qo, kv = _head_channels(keep, unit.qo), _head_channels(keep, unit.kv)
        slice_linear(sites.q, qo, "out", records)
        slice_linear(sites.k, kv, "out", records)
        slice_linear(sites.v, kv, "out", records)
        slice_linear(sites.o, qo, "in", records)
        for param, dim in family.per_head_params(model, i):
            slice_param(param, dim, keep.nonzero().flatten(), records)
        family.set_heads(model, i, int(keep.sum()))
    for i, ffn in enumerate(family.ffn_sites(model)):
        neurons = plan.neurons[i].nonzero().flatten()
        for proj in ffn.ffn_in:
            slice_linear(proj, neurons, "out", records)
        slice_linear(ffn.ffn_out, neurons, "in", records)
    _shrink_hidden(model, family, plan.hidden.nonzero().flatten(), records)
    family.update_config(model, family.inventory(model))
    model.config.aptune["shapes"] = shapes_dict(model, family)
    return records


def _shrink_hidden(model: nn.Module, family: ModelFamily, keep: torch.Tensor, records: list) -> None:
    if keep.numel() == family.inventory(model).hidden:
        return
    sliced: set[int] = set()
    for emb in family.hidden_embeddings(model):
        if id(emb.weight) not in sliced:  # tied embeddings (T5's shared table) are cut once
            slice_param(emb.weight, 1, keep, records)
            sliced.add(id(emb.weight))
        emb.embedding_dim = keep.numel()
    for norm in family.residual_norms(model):
        _slice_norm(norm, keep, records)
    for reader in family.hidden_readers(model):
        slice_linear(reader, keep, "in", records)
    for writer in family.hidden_writers(model):
        slice_linear(writer, keep, "out", records)


def _check_plan(inventory: BlockInventory, plan: MaskPlan) -> None:
    heads = tuple(m.numel() for m in plan.heads)
    neurons = tuple(m.numel() for m in plan.neurons)
    if heads != inventory.heads or neurons != inventory.neurons or plan.hidden.numel() != inventory.hidden:
        raise ValueError(
            f"mask plan shapes (heads {heads}, neurons {neurons}, hidden {plan.hidden.numel()}) do not match "
            f"the model (heads {inventory.heads}, neurons {inventory.neurons}, hidden {inventory.hidden})"
        )
    for what, masks in (("head of attention module", plan.heads), ("neuron of FFN", plan.neurons)):
        for i, m in enumerate(masks):
            if not bool(m.any()):
                raise ValueError(f"mask plan removes every {what} {i}; keep at least one")
    if not bool(plan.hidden.any()):
        raise ValueError("mask plan removes every hidden dimension; keep at least one")


def slice_optimizer_state(optimizer: torch.optim.Optimizer, records: list[SliceRecord]) -> None:
    """Cut per-parameter optimizer state (e.g. Adam moments) exactly like the parameters were cut.

    State of surviving entries is kept; scalar state (step counts) is left alone.
    """
    for rec in records:
        state = optimizer.state.get(rec.param)
        if not state:
            continue
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == rec.old_shape:
                state[key] = value.index_select(rec.dim, rec.index.to(value.device)).contiguous()


def shapes_dict(model: nn.Module, family: ModelFamily) -> dict[str, object]:
    """Shapes per attention module and per FFN, with their names, as plain JSON data."""
    inventory = family.inventory(model)
    attention, ffn = family.block_labels(model)
    return {
        "hidden_size": inventory.hidden,
        "head_dim": family.head_dim(model),
        "heads": list(inventory.heads),
        "neurons": list(inventory.neurons),
        "attention_labels": attention,
        "ffn_labels": ffn,
    }


def first_k_plan(inventory: BlockInventory, shapes: dict) -> MaskPlan:
    """Keep the first blocks of every module up to the counts of `shapes` (a `shapes_dict`): cuts a
    freshly built model to recorded shapes before the recorded weights are loaded into it."""

    def first(k: int, n: int) -> torch.Tensor:
        return torch.arange(n) < k

    return MaskPlan(
        heads=[first(k, n) for k, n in zip(shapes["heads"], inventory.heads, strict=True)],
        neurons=[first(k, n) for k, n in zip(shapes["neurons"], inventory.neurons, strict=True)],
        hidden=first(shapes["hidden_size"], inventory.hidden),
        params=-1,
    )


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Write `model`'s tensors to a safetensors file whose bytes depend only on their values.

    Tensors sharing storage (tied embeddings) are stored once, under the first of their names in
    sorted order, as safetensors' `save_model` does; `load_model` and transformers' loaders re-tie
    them. Unlike `save_model`, no renaming table goes into the header, whose key order would vary
    from process to process.
    """
    state = model.state_dict()
    kept: dict[tuple, str] = {}
    for name in sorted(state):
        t = state[name]
        view = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        kept.setdefault(view, name)
    tensors = {name: state[name].detach().contiguous() for name in sorted(kept.values())}
    save_file(tensors, str(path), metadata={"format": "pt"})


def save_pruned(model: nn.Module, directory: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Merge adapters and write `model.safetensors`, `config.json` and `aptune.json` to `directory`.

    `load_pruned` reads every such directory. When `is_stock(model)` (LLaMA-family models pruned
    with `uniform_layers`, or nothing cut), the directory is also a stock checkpoint that
    `transformers.AutoModel*.from_pretrained` loads without aptune; otherwise stock loading fails
    with an error naming `aptune.load_pruned` (see `export_config`).

    Each file is written to a temporary name and renamed into place, `aptune.json` last, so a
    directory with an `aptune.json` always holds a complete model. Returns the directory.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    family = family_for(model)
    merge_adapters(model)
    family.prepare(model)  # the file then holds every per-module tensor that load_pruned rebuilds
    _ensure_base_config(model)
    inventory = family.inventory(model)
    shapes = shapes_dict(model, family)
    model.config.aptune["shapes"] = shapes
    with staged_file(out / WEIGHTS_NAME) as tmp:
        save_weights(model, tmp)
    stock = is_stock(model, family)
    write_text(
        out / "config.json", json.dumps(export_config(model, family, stock), indent=2, sort_keys=True) + "\n"
    )
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "family": family.name,
        "architecture": type(model).__name__,
        "shapes": shapes,
        "stock_checkpoint": stock,
        "prunable_params": inventory.prunable_params(),
        "total_params": sum(p.numel() for p in model.parameters()),
        "metadata": metadata or {},
    }
    write_json(out / META_NAME, meta)
    return out


def export_config(model: nn.Module, family: ModelFamily, stock: bool) -> dict:
    """The `config.json` of `model`'s export (whose config holds the `aptune` block), as a dict.

    `architectures` names the model's class, as `save_pretrained` writes it, in the config and in
    `aptune.base_config`; `_name_or_path` holds no local path (`portable_name`). Unless `stock`
    (`is_stock(model)`), `model_type` and the family's `layer_shape_keys` hold `PER_LAYER_NOTE`,
    so stock `from_pretrained` fails on the config with an error that quotes it.
    """
    config = json.loads(model.config.to_json_string())
    for entry in (config, config["aptune"]["base_config"]):
        entry["architectures"] = [type(model).__name__]
        if "_name_or_path" in entry:
            entry["_name_or_path"] = portable_name(str(entry["_name_or_path"]))
    if not stock:
        config.update(dict.fromkeys(("model_type", *family.layer_shape_keys), PER_LAYER_NOTE))
    return config


def portable_name(name: str) -> str:
    """A hub model id (`org/name`) as it is; a local path as its last component, so no absolute
    path of this machine goes into an export."""
    if _HUB_ID.fullmatch(name) and not Path(name).exists():
        return name
    return re.split(r"[\\/]", name.rstrip("\\/"))[-1]


def is_stock(model: nn.Module, family: ModelFamily | None = None) -> bool:
    """True when `model`'s config fully describes its shapes, so stock transformers can load it
    (`from_pretrained`) without aptune: a family with stock export and equal shapes in every layer,
    or any model from which nothing was cut (a run without pruning)."""
    family = family or family_for(model)
    inv = family.inventory(model)
    uniform = len(set(inv.heads)) == 1 and len(set(inv.neurons)) == 1
    fits = inv.hidden % family.stock_hidden_multiple(model, inv.heads[0]) == 0
    return (family.stock_export and uniform and fits) or _nothing_cut(model, family)


def _nothing_cut(model: nn.Module, family: ModelFamily) -> bool:
    """True when `model` has the shapes of the model it was pruned from (built on the meta device)."""
    record = getattr(model.config, "aptune", None)
    if record is None:
        return True
    with torch.device("meta"):
        original = type(model)(type(model.config).from_dict(copy.deepcopy(record["base_config"])))
    return family.inventory(original) == family.inventory(model)


def _read_meta(directory: Path) -> dict:
    path = directory / META_NAME
    if not path.is_file():
        raise ModelDirError(
            f"{directory} is not an aptune model directory: {META_NAME} is missing. "
            "Pass the model/ folder written by aptune train or save_pruned."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path} is not valid JSON ({exc}); the model directory is damaged") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelDirError(f"{path} is not an aptune model description (expected format {FORMAT!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelDirError(
            f"{path} has format version {meta.get('version')}; this aptune reads {FORMAT_VERSION}"
        )
    return meta


def _model_class(name: str) -> type:
    cls = getattr(transformers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ModelDirError(f"unknown model architecture {name!r} in the aptune model description")
    return cls


def base_config(path: Path) -> transformers.PretrainedConfig:
    """The unpruned model's config recorded in `config.json` (read as JSON: the pruned shapes in
    its top-level fields need not satisfy transformers' validation, e.g. per-layer head counts)."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path / 'config.json'} is missing or not valid JSON ({exc})") from exc
    aptune = config.get("aptune") if isinstance(config, dict) else None
    if not isinstance(aptune, dict) or not isinstance(aptune.get("base_config"), dict):
        raise ModelDirError(
            f"{path / 'config.json'} lacks the 'aptune.base_config' entry written by save_pruned"
        )
    base = copy.deepcopy(aptune["base_config"])
    model_type = base.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise ModelDirError(f"unknown model type {model_type!r} in {path / 'config.json'}")
    return transformers.CONFIG_MAPPING[model_type].from_dict(base)


def _weights_dtype(path: Path) -> torch.dtype:
    """The dtype of the first floating-point tensor in a safetensors file (float32 if none)."""
    with safe_open(path, framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            dtype = f.get_slice(key).get_dtype()
            if dtype in _SAFETENSORS_FLOATS:
                return _SAFETENSORS_FLOATS[dtype]
    return torch.float32


_SAFETENSORS_FLOATS = {
    "F32": torch.float32,
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F64": torch.float64,
}


def load_pruned(directory: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model written by `save_pruned`, rebuilding its per-layer shapes; returns it in eval mode."""
    path = Path(directory)
    meta = _read_meta(path)
    model = _model_class(meta["architecture"])(base_config(path)).to(_weights_dtype(path / WEIGHTS_NAME))
    family = family_for(model)
    shrink_model(model, first_k_plan(family.inventory(model), meta["shapes"]), family)
    missing, unexpected = load_model(model, path / WEIGHTS_NAME, strict=False)
    if missing or unexpected:
        raise ModelDirError(
            f"{path / WEIGHTS_NAME} does not match the recorded shapes: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return model.to(device).eval()
