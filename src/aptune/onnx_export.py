"""ONNX export of aptune models, for ONNX Runtime: fp32 and dynamic int8, any per-layer shapes.

`export_onnx` loads an export with `load_pruned` and traces it with torch's TorchScript-based
exporter (`torch.onnx.export(..., dynamo=False)`, opset 17) into `model.onnx`, with dynamic batch and
sequence axes; with ``quantize="int8"`` it also writes `model.int8.onnx` (onnxruntime's dynamic
quantization, int8 weights). The output folder also holds the tokenizer files, `aptune.json`,
`config.json` and the model card, so a serving process needs only onnxruntime and a tokenizer.

The TorchScript exporter was kept over the dynamo exporter: both give the same logits, and on a
pruned MiniLM it exported about 6x faster and the graph ran a little faster in onnxruntime.
Attention is traced as plain MatMul / Softmax nodes, so layers with different head counts need no
special handling. The graph is traced on a padded batch, so the padding mask is part of it.

`OnnxModel` puts an onnxruntime session behind the call interface of a transformers model
(`model(**inputs).logits`), so `aptune eval --runtime onnx` scores it with the same code as the torch
export.

Supported: BERT / RoBERTa sequence classifiers (input_ids, attention_mask and, when the model has
token types, token_type_ids -> logits) and LLaMA-family decoders (input_ids, attention_mask ->
logits, no past key values). T5 is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
import transformers
from torch import nn

from .atomic import staged_dir
from .card import CARD_NAME, run_card
from .errors import AptuneError
from .families import family_for
from .shrink import META_NAME, WEIGHTS_NAME, base_config, load_pruned

ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
OPSET = 17
QUANTIZE = ("int8",)
SUPPORTED = "BERT/RoBERTa sequence classifiers and LLaMA/Mistral/Qwen2 decoders"
INSTALL = "pip install 'aptune[onnx]'"
_AXES = {0: "batch", 1: "sequence"}


class OnnxExportError(AptuneError):
    """A model or folder that cannot be exported to, or run from, ONNX; the message names the fix."""


def require_onnx() -> None:
    """Refuse to go on when onnx or onnxruntime is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxExportError(f"ONNX export and runtime need onnx and onnxruntime: {INSTALL}") from exc


def input_names(model: nn.Module, model_dir: str | os.PathLike) -> list[str]:
    """The graph inputs of `model`, or an error naming what is supported."""
    family, architecture = family_for(model).name, type(model).__name__
    if family == "bert" and architecture.endswith("ForSequenceClassification"):
        types = getattr(model.config, "type_vocab_size", 1) > 1
        return ["input_ids", "attention_mask", *(["token_type_ids"] if types else [])]
    if family == "llama" and architecture.endswith(("ForCausalLM", "ForSequenceClassification")):
        return ["input_ids", "attention_mask"]
    raise OnnxExportError(f"{model_dir} holds a {architecture}; ONNX export supports {SUPPORTED}")


class _Logits(nn.Module):
    """`model`'s logits from positional inputs named `names` (what the tracer sees); a `decoder`
    is run without a key-value cache."""

    def __init__(self, model: nn.Module, names: list[str], decoder: bool) -> None:
        super().__init__()
        self.model, self.names, self.decoder = model, names, decoder

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.names, inputs, strict=True))
        if self.decoder:
            kwargs["use_cache"] = False
        return self.model(**kwargs).logits  # classifier (B, K); causal LM (B, T, V)


def _example_inputs(model: nn.Module, names: list[str]) -> tuple[torch.Tensor, ...]:
    """A (2, 8) batch to trace with; its second row is half padding, so the mask is traced."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (2, 8), generator=g)  # (B, T)
    mask = torch.ones_like(ids)  # (B, T)
    mask[1, 4:] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return tuple(values[name] for name in names)


def export_graph(model: nn.Module, names: list[str], path: Path) -> None:
    """Trace `model` into the ONNX file `path`: inputs `names`, output `logits`, dynamic batch and
    sequence axes (the exporter's tracer and deprecation warnings are expected and silenced)."""
    logits_axes = _AXES if "ForCausalLM" in type(model).__name__ else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model, names, decoder=family_for(model).name == "llama").eval(),
            _example_inputs(model, names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**dict.fromkeys(names, _AXES), "logits": logits_axes},
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization of `source` into `target`: int8 weights of MatMul / Gemm,
    one scale per output channel, activations quantized per batch at run time. Per-channel scales
    changed half as many predictions of a pruned MiniLM as one scale per tensor, and ran faster."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def default_output(model_dir: str | os.PathLike) -> Path:
    """Where `aptune export` writes by default: `onnx/` next to the model folder."""
    return Path(model_dir).resolve().parent / "onnx"


def _check_output(out: Path) -> None:
    """Refuse an output folder that holds anything but an earlier ONNX export (which is replaced)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / ONNX_NAME).is_file())):
        raise OnnxExportError(
            f"output folder {out} exists and is not an ONNX export; choose another --output "
            "(an earlier ONNX export there is replaced)"
        )


def onnx_card_section(files: list[str]) -> str:
    """The part of the model card that describes the ONNX files and how to run them."""
    rows = "\n".join(f"- `{name}`" for name in files)
    return f"""
## ONNX Runtime files

Exported with `aptune export --format onnx` (opset {OPSET}, dynamic batch and sequence axes):

{rows}

```python
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

session = ort.InferenceSession("{files[-1]}")
enc = Tokenizer.from_file("tokenizer.json").encode("a text")
feed = {{"input_ids": [enc.ids], "attention_mask": [enc.attention_mask], "token_type_ids": [enc.type_ids]}}
names = {{i.name for i in session.get_inputs()}}
logits = session.run(None, {{k: np.array(v, dtype=np.int64) for k, v in feed.items() if k in names}})[0]
```
"""


def export_onnx(
    model_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None, quantize: str | None = None
) -> Path:
    """Export the aptune model in `model_dir` to ONNX in `output_dir` (default `onnx/` next to it);
    returns the output folder (see the module docstring for what it holds)."""
    if quantize is not None and quantize not in QUANTIZE:
        raise OnnxExportError(f"unknown quantization {quantize!r}; use one of {', '.join(QUANTIZE)}")
    require_onnx()
    model = load_pruned(model_dir).float()  # fp32: the reference graph (int8 is derived from it)
    names = input_names(model, model_dir)
    out = Path(output_dir) if output_dir is not None else default_output(model_dir)
    _check_output(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = [ONNX_NAME, *([INT8_NAME] if quantize else [])]
    with staged_dir(out) as tmp:
        export_graph(model, names, tmp / ONNX_NAME)
        if quantize:
            quantize_int8(tmp / ONNX_NAME, tmp / INT8_NAME)
        tokenizer.save_pretrained(tmp)
        for name in (META_NAME, "config.json"):
            shutil.copyfile(Path(model_dir) / name, tmp / name)
        (tmp / CARD_NAME).write_text(run_card(model_dir) + onnx_card_section(files), encoding="utf-8")
    return out


class OnnxModel(nn.Module):
    """An onnxruntime session behind the call interface of a transformers model: `model(**inputs)`
    returns an object with `logits` (a CPU tensor). Inputs the graph does not take are ignored, and
    token types default to zeros. Its one empty parameter tells callers the device (CPU)."""

    def __init__(self, path: Path, config: transformers.PretrainedConfig) -> None:
        super().__init__()
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.config = config
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, **inputs: torch.Tensor) -> SimpleNamespace:
        if "token_type_ids" not in inputs:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        feed = {name: inputs[name].cpu().long().numpy() for name in self.names}
        logits = self.session.run(["logits"], feed)[0]  # classifier (B, K); causal LM (B, T, V)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def _onnx_file(path: Path) -> Path:
    """The ONNX file of a folder written by `export_onnx` (or the file itself), or an error."""
    if path.suffix == ".onnx":
        if not path.is_file():
            raise OnnxExportError(
                f"{path}: file not found; give an ONNX export folder or a .onnx file in one"
            )
        return path
    if (path / ONNX_NAME).is_file():
        return path / ONNX_NAME
    if (path / WEIGHTS_NAME).is_file():
        raise OnnxExportError(
            f"{path} holds a torch export, not an ONNX one; write one with "
            f"aptune export {path} --format onnx and evaluate its output folder"
        )
    raise OnnxExportError(f"{path} is not an ONNX export (no {ONNX_NAME}); write one with aptune export")


def load_onnx_dir(path: str | os.PathLike) -> tuple[OnnxModel, object, dict]:
    """The ONNX model (an `OnnxModel`), tokenizer and `aptune.json` of an ONNX export: a folder
    written by `export_onnx` (its `model.onnx`) or a `.onnx` file in one (e.g. `model.int8.onnx`)."""
    require_onnx()
    file = _onnx_file(Path(path))
    folder = file.parent
    if not (folder / META_NAME).is_file():
        raise OnnxExportError(
            f"{folder} lacks {META_NAME}; pass a folder written by aptune export --format onnx"
        )
    meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return OnnxModel(file, base_config(folder)), tokenizer, meta
