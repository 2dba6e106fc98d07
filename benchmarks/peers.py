"""Peer structured pruning for the benchmarks: torch-pruning (VainF/Torch-Pruning) on BERT/RoBERTa.

`torch_pruning_prune` removes whole attention heads and FFN neurons from every encoder layer with
torch-pruning's dependency graph, importance criteria and `BasePruner` (global ranking, head pruning via
its `num_heads` support), until the encoder's prunable weights fit a parameter budget. The hidden size
(embeddings, LayerNorms, residual stream) is never pruned. `prunable_params` counts the same weights that
the budget refers to, so aptune plans and torch-pruning results can be compared at equal size.

    python benchmarks/peers.py      # self-check on the real MiniLM (1-2 minutes on 2 busy cores)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch_pruning as tp
from torch import nn

IMPORTANCES = ("taylor", "magnitude")


def _base(model: nn.Module) -> nn.Module:
    """The bare encoder model (`model.bert` / `model.roberta`) of a task model, or the model itself."""
    base = getattr(model, "base_model", model)
    if not hasattr(base, "encoder"):
        raise TypeError(f"{type(model).__name__} has no BERT-style encoder (base_model.encoder.layer)")
    return base


def _layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers (`encoder.layer[*]`) of a BERT/RoBERTa model."""
    return list(_base(model).encoder.layer)


def _prunable_linears(layer: nn.Module) -> Iterator[nn.Linear]:
    """Attention query/key/value/output.dense and FFN intermediate.dense/output.dense of one layer."""
    attn = layer.attention
    yield from (attn.self.query, attn.self.key, attn.self.value, attn.output.dense)
    yield from (layer.intermediate.dense, layer.output.dense)


def prunable_params(model: nn.Module) -> int:
    """Sum of weight numel of every layer's attention query/key/value/output.dense and FFN intermediate.dense/output.dense (BERT/RoBERTa encoder.layer[*])."""  # noqa: E501
    return sum(lin.weight.numel() for layer in _layers(model) for lin in _prunable_linears(layer))


def layer_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(attention heads, FFN width) of every encoder layer, read from the weight shapes."""
    out = []
    for layer in _layers(model):
        attn = layer.attention.self
        heads = attn.query.out_features // attn.attention_head_size
        out.append((heads, layer.intermediate.dense.out_features))
    return out


def _fix_attention(model: nn.Module) -> None:
    """Make every self-attention module's head count and width agree with its (pruned) query weight."""
    for layer in _layers(model):
        attn = layer.attention.self
        width = attn.query.out_features
        same = width == attn.key.out_features == attn.value.out_features
        if width % attn.attention_head_size or not same:
            raise RuntimeError(f"attention was not pruned by whole heads: q/k/v widths "
                               f"{width}/{attn.key.out_features}/{attn.value.out_features}, "
                               f"head size {attn.attention_head_size}")  # fmt: skip
        attn.num_attention_heads = width // attn.attention_head_size
        attn.all_head_size = width


def _accumulate_gradients(model: nn.Module, calibration: list[dict[str, torch.Tensor]]) -> None:
    """Fresh gradients of the prunable weights: the sum over `calibration` of the task loss's gradient.

    Only the encoder layers' linear weights need gradients for Taylor importance; every other parameter
    (embeddings above all) is frozen for the backward passes and restored afterwards.
    """
    wanted = {id(p) for layer in _layers(model) for lin in _prunable_linears(layer) for p in lin.parameters()}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in wanted]
    model.zero_grad(set_to_none=True)
    try:
        for p in frozen:
            p.requires_grad_(False)
        for batch in calibration:
            if "labels" not in batch:
                raise ValueError("calibration batches need `labels` for Taylor importance")
            model(**batch).loss.backward()
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _spare_one(pruner: tp.pruner.BasePruner, group, unit: int) -> object:
    """`group` minus the most important `unit`-wide block of its root layer when it would empty the layer.

    The root of an attention group is `attention.output.dense` (input channels, `unit` = head size), of an
    FFN group `intermediate.dense` (output channels, `unit` = 1). Returns the group unchanged otherwise.
    """
    dep, idxs = group[0]
    module, handler = dep.target.module, dep.handler
    width = module.out_features if pruner.DG.is_out_channel_pruning_fn(handler) else module.in_features
    if len(set(idxs)) < width:
        return group
    full = pruner.DG.get_pruning_group(module, handler, list(range(width)))
    imp = pruner.estimate_importance(full)
    best = int(imp.view(width // unit, unit).mean(1).argmax()) if imp is not None else 0
    keep = set(range(best * unit, (best + 1) * unit))
    return pruner.DG.get_pruning_group(module, handler, [i for i in idxs if i not in keep])


def _trim(model: nn.Module, pruner: tp.pruner.BasePruner, heads_to: int, target_params: int, taylor: bool,
          calibration: list[dict[str, torch.Tensor]]) -> None:  # fmt: skip
    """Remove the globally least important heads down to `heads_to`, then FFN neurons until the prunable
    weights fit `target_params`; every layer keeps its most important head and neuron.

    Only needed when keeping one head/neuron per layer overrode torch-pruning's global ranking (or to
    absorb rounding); ranks units with the same torch-pruning importance over the same dependency graph.
    """
    layers = _layers(model)
    cost = {"head": 4 * _base(model).config.hidden_size * layers[0].attention.self.attention_head_size,
            "ffn": 2 * _base(model).config.hidden_size}  # fmt: skip
    roots = {
        "head": [(layer.attention.output.dense, tp.prune_linear_in_channels) for layer in layers],
        "ffn": [(layer.intermediate.dense, tp.prune_linear_out_channels) for layer in layers],
    }
    for kind in ("head", "ffn"):
        heads = sum(shape[0] for shape in layer_shapes(model))
        need = (
            heads - heads_to
            if kind == "head"
            else math.ceil((prunable_params(model) - target_params) / cost[kind])
        )
        if need <= 0:
            continue
        if taylor:
            _accumulate_gradients(model, calibration)
        candidates = []
        for li, (module, handler) in enumerate(roots[kind]):
            width = module.in_features if kind == "head" else module.out_features
            unit = layers[li].attention.self.attention_head_size if kind == "head" else 1
            imp = pruner.estimate_importance(pruner.DG.get_pruning_group(module, handler, list(range(width))))
            imp = imp.view(width // unit, unit).mean(1)
            order = imp.argsort(descending=True).tolist()
            candidates += [(float(imp[u]), li, u, unit) for u in order[1:]]  # the best unit always stays
        if need > len(candidates):
            raise ValueError("target is below one head and one FFN neuron per layer")
        chosen: dict[int, list[int]] = {}
        for _, li, u, unit in sorted(candidates)[:need]:
            chosen.setdefault(li, []).extend(range(u * unit, (u + 1) * unit))
        with torch.no_grad():
            for li, idxs in chosen.items():
                module, handler = roots[kind][li]
                pruner.DG.get_pruning_group(module, handler, sorted(idxs)).prune()
        model.zero_grad(set_to_none=True)
        _fix_attention(model)


def _round_pruner(model: nn.Module, inputs: dict[str, torch.Tensor], imp: tp.importance.Importance,
                  heads_to: int, neurons_to: int) -> tp.pruner.BasePruner:  # fmt: skip
    """A one-step torch-pruning `BasePruner` that takes the model to `heads_to` heads and `neurons_to`
    FFN neurons in all (global ranking across layers; hidden size, embeddings and task head untouched).

    The ratios are set so that torch-pruning's `int(initial * (1 - ratio))` lands exactly on the wanted
    counts. The default ranking scope holds only the attention groups; with `prune_head_dims=False` its
    channel ratio only gates head removal, so it mirrors the head ratio (in channels) exactly.
    """
    base, layers = _base(model), _layers(model)
    num_heads: dict[nn.Module, int] = {}
    for layer in layers:
        attn = layer.attention.self
        for lin in (attn.query, attn.key, attn.value):
            num_heads[lin] = lin.out_features // attn.attention_head_size
    heads = sum(num_heads[layer.attention.self.query] for layer in layers)
    head_size = layers[0].attention.self.attention_head_size
    neurons = sum(layer.intermediate.dense.out_features for layer in layers)
    head_ratio = 1 - (heads_to + 0.5) / heads
    channel_ratio = 1 - (heads_to * head_size + 0.5) / (heads * head_size)
    ffn_ratio = 1 - (neurons_to + 0.5) / neurons
    ignored = [child for child in model.children() if child is not base]  # classifier head, dropout
    ignored += [base.embeddings] + ([base.pooler] if getattr(base, "pooler", None) is not None else [])
    return tp.pruner.BasePruner(
        model,
        inputs,
        importance=imp,
        global_pruning=True,
        pruning_ratio=max(channel_ratio, 0.0),
        pruning_ratio_dict={tuple(layer.intermediate.dense for layer in layers): max(ffn_ratio, 0.0)},
        iterative_steps=1,
        num_heads=num_heads,
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=max(head_ratio, 0.0),
        ignored_layers=ignored,
        in_channel_groups={},  # fresh dicts: torch-pruning's defaults are shared mutable arguments
        out_channel_groups={},
        output_transform=lambda out: out.logits.sum(),
    )


def torch_pruning_prune(model: nn.Module, example_inputs: dict[str, torch.Tensor], target_params: int,
                        calibration: list[dict[str, torch.Tensor]], importance: str = "taylor",
                        steps: int = 5) -> nn.Module:  # fmt: skip
    """Structurally prune a transformers BertForSequenceClassification / RobertaForSequenceClassification
    (plain nn.Linear layers; dropout 0 / eval is fine) IN PLACE with torch-pruning so that
    prunable_params(model) <= target_params, pruning attention heads (whole heads, via torch-pruning's
    num_heads / head-pruning support) and FFN neurons (and NOT the hidden size — keep embeddings intact).
    'taylor' uses first-order Taylor importance computed from the loss on the `calibration` batches
    (they contain `labels`); 'magnitude' uses L2 magnitude. Iterative steps are fine. After pruning,
    fix up every attention module's num_attention_heads and all_head_size so the model's forward works,
    and return the model.

    How: torch-pruning traces the model into a dependency graph (per layer, one group couples q/k/v
    output channels with attention.output.dense input channels and one couples intermediate.dense
    outputs with output.dense inputs; the hidden-size group is excluded by ignoring the embeddings,
    pooler and classifier). Pruning runs in `steps` rounds along a linear schedule; each round re-traces
    the model, recomputes the Taylor gradients and runs one `BasePruner` step with `global_pruning=True`
    that removes whole heads (`num_heads`, `prune_num_heads=True`, `prune_head_dims=False`; heads ranked
    across layers) and FFN neurons (one scope over all `intermediate.dense`). Attention and FFN keep the
    same share of their weights: `floor(heads * keep)` heads stay and the FFN takes the rest of the
    budget, so the result lands just under `target_params`; a final trim of the least important FFN
    neurons (and heads) covers anything left over. Every layer keeps at least one head and one neuron.
    Importance is torch-pruning's default group form (mean over coupled layers, each group normalised by
    its mean).
    """
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
    taylor = importance == "taylor"
    if taylor and not calibration:
        raise ValueError("Taylor importance needs calibration batches")
    base, layers = _base(model), _layers(model)
    hidden = base.config.hidden_size
    start = prunable_params(model)
    if target_params >= start:
        return model
    head_size = layers[0].attention.self.attention_head_size
    heads0 = sum(layer.attention.self.query.out_features // head_size for layer in layers)
    neurons0 = sum(layer.intermediate.dense.out_features for layer in layers)
    head_cost, neuron_cost = 4 * hidden * head_size, 2 * hidden
    if target_params < len(layers) * (head_cost + neuron_cost):
        raise ValueError(f"target {target_params} is below one head and one FFN neuron per layer")
    kept_heads = max(len(layers), math.floor(heads0 * target_params / start))
    kept_neurons = max(len(layers), (target_params - kept_heads * head_cost) // neuron_cost)

    imp = tp.importance.TaylorImportance() if taylor else tp.importance.MagnitudeImportance(p=2)
    inputs = {k: v for k, v in example_inputs.items() if k != "labels"}
    was_training = model.training
    model.eval()
    for step in range(1, steps + 1):
        heads_to = heads0 - round((heads0 - kept_heads) * step / steps)
        neurons_to = neurons0 - round((neurons0 - kept_neurons) * step / steps)
        pruner = _round_pruner(model, inputs, imp, heads_to, neurons_to)
        if taylor:
            _accumulate_gradients(model, calibration)
        for group in pruner.step(interactive=True):
            root = group[0].dep.target.module
            unit = head_size if any(root is layer.attention.output.dense for layer in layers) else 1
            _spare_one(pruner, group, unit).prune()
        model.zero_grad(set_to_none=True)
        _fix_attention(model)

    if prunable_params(model) > target_params:
        _trim(model, pruner, kept_heads, target_params, taylor, calibration)
    _fix_attention(model)
    residual = [
        lin.out_features for layer in layers for lin in (layer.attention.output.dense, layer.output.dense)
    ]
    if base.embeddings.word_embeddings.embedding_dim != hidden or set(residual) != {hidden}:
        raise RuntimeError("torch-pruning changed the hidden size")
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return model


if __name__ == "__main__":
    import time

    import transformers

    from aptune.assets import builtin_model_path
    from aptune.train.data import rotten_tomatoes

    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    path = builtin_model_path("minilm")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    examples = rotten_tomatoes()["train"]
    calibration = []
    for b in range(4):
        chunk = examples[b * 32 : (b + 1) * 32]
        enc = dict(tokenizer([e.text for e in chunk], padding="max_length", truncation=True, max_length=64,
                             return_tensors="pt"))  # fmt: skip
        enc["labels"] = torch.tensor([e.label for e in chunk])
        calibration.append(enc)
    example = {k: v for k, v in calibration[0].items() if k != "labels"}

    before = prunable_params(model)
    total_before = sum(p.numel() for p in model.parameters())
    target = int(0.4 * before)
    tic = time.perf_counter()
    torch_pruning_prune(model, example, target, calibration, importance="taylor")
    seconds = time.perf_counter() - tic
    after = prunable_params(model)
    print(f"prunable params: {before:,} -> {after:,} (target {target:,}, {after / target:.4f} of target)")
    print(f"all params: {total_before:,} -> {sum(p.numel() for p in model.parameters()):,}")
    for i, (heads, ffn) in enumerate(layer_shapes(model)):
        print(f"  layer {i}: heads {heads:2d}, ffn {ffn:4d}")
    with torch.no_grad():
        logits = model(**example).logits
    assert after <= target and after >= 0.98 * target, (after, target)
    assert torch.isfinite(logits).all() and logits.shape == (32, 2), logits.shape
    print(f"forward ok: logits {tuple(logits.shape)} finite; pruning took {seconds:.1f} s")
