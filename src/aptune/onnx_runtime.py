"""Running aptune's ONNX exports in onnxruntime, behind the call interface of a transformers model.

An ONNX export folder (written by :func:`aptune.onnx_export.export_onnx`) holds `model.onnx` for
classifiers and decoder LMs (input_ids, attention_mask [, token_type_ids] -> logits); for decoder
LMs also `model_with_past.onnx` (input_ids, attention_mask over past and new tokens, position_ids,
`past.<layer>.key/value` -> logits, `present.<layer>.key/value`), which generation feeds one token
per step; and for encoder-decoders (T5) `encoder.onnx` (input_ids, attention_mask ->
last_hidden_state) and `decoder.onnx` (decoder_input_ids, encoder_hidden_states,
encoder_attention_mask -> logits, no key-value cache). Each may have a dynamic int8 twin
(`model.int8.onnx`, ...).

`OnnxModel` and `OnnxSeq2Seq` wrap the sessions so that `model(**inputs).logits` and, for T5,
`model.generate(...)` (greedy) work as they do for the torch export: `aptune eval --runtime onnx`
scores an ONNX export with the same code and data. `greedy_generate` is the decoding loop on numpy
arrays, the same one the model card shows for serving with onnxruntime alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import transformers
from torch import nn

from .errors import AptuneError
from .shrink import META_NAME, WEIGHTS_NAME, base_config

ONNX_NAME = "model.onnx"
PAST_NAME = "model_with_past.onnx"
ENCODER_NAME = "encoder.onnx"
DECODER_NAME = "decoder.onnx"
INT8_TAG = ".int8"
INSTALL = "pip install 'aptune[onnx]'"


class OnnxExportError(AptuneError):
    """A model or folder that cannot be exported to, or run from, ONNX; the message names the fix."""


def require_onnx() -> None:
    """Refuse to go on when onnx or onnxruntime is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxExportError(f"ONNX export and runtime need onnx and onnxruntime: {INSTALL}") from exc


def int8_name(name: str) -> str:
    """The file name of the int8 twin of the graph file `name` (`model.onnx` -> `model.int8.onnx`)."""
    return name.removesuffix(".onnx") + INT8_TAG + ".onnx"


def is_onnx_export(folder: Path) -> bool:
    """Whether `folder` holds an ONNX export's graph (`model.onnx` or `encoder.onnx`)."""
    return (folder / ONNX_NAME).is_file() or (folder / ENCODER_NAME).is_file()


def _session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _int64(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """`values` as the int64 numpy array a session takes."""
    return np.asarray(torch.as_tensor(values).cpu(), dtype=np.int64)


def _feed(names: list[str], inputs: dict[str, torch.Tensor | np.ndarray]) -> dict[str, np.ndarray]:
    """The int64 numpy arrays a session takes, picked by name from `inputs`."""
    return {name: _int64(inputs[name]) for name in names}


class _OnnxSessions(nn.Module):
    """What every session wrapper shares: the model's config, and one empty parameter that tells
    callers reading `next(model.parameters()).device` the device (CPU)."""

    def __init__(self, config: transformers.PretrainedConfig) -> None:
        super().__init__()
        self.config = config
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)


class OnnxModel(_OnnxSessions):
    """An onnxruntime session behind the call interface of a transformers model: `model(**inputs)`
    returns an object with `logits` (a CPU tensor). Inputs the graph does not take are ignored, the
    attention mask defaults to ones and token types to zeros, and a graph with a key-value cache gets
    an empty one (and positions 0..T-1, as the torch model uses without a cache)."""

    def __init__(self, path: Path, config: transformers.PretrainedConfig) -> None:
        super().__init__(config)
        self.session = _session(path)
        inputs = self.session.get_inputs()
        self.names = [i.name for i in inputs if not i.name.startswith("past.")]
        self.past = {i.name: (i.shape[1], i.shape[3]) for i in inputs if i.name.startswith("past.")}

    def forward(self, **inputs: torch.Tensor) -> SimpleNamespace:
        ids = inputs["input_ids"]  # (B, T)
        inputs.setdefault("attention_mask", torch.ones_like(ids))
        inputs.setdefault("token_type_ids", torch.zeros_like(ids))
        inputs.setdefault("position_ids", torch.arange(ids.shape[1]).expand_as(ids))
        feed = _feed(self.names, inputs)
        for name, (heads, head_dim) in self.past.items():
            feed[name] = np.zeros((len(ids), heads, 0, head_dim), dtype=np.float32)  # (B, h, 0, d)
        logits = self.session.run(["logits"], feed)[0]  # (B, K) or (B, T, V)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def greedy_generate(
    encoder,
    decoder,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    max_new_tokens: int,
    start_id: int,
    eos_id: int | list[int],
    pad_id: int,
) -> np.ndarray:
    """Greedy decoding with an encoder and a decoder onnxruntime session, as `generate()` does it:
    the output (B, 1 + up to max_new_tokens) starts with `start_id`; a row that has produced
    `eos_id` (or one of a list of them) continues with `pad_id`; decoding stops when every row has
    finished."""
    mask = attention_mask.astype(np.int64)  # (B, T)
    source = {"input_ids": input_ids.astype(np.int64), "attention_mask": mask}
    hidden = encoder.run(None, source)[0]  # (B, T, H)
    out = np.full((len(input_ids), 1), start_id, dtype=np.int64)  # (B, 1)
    done = np.zeros(len(input_ids), dtype=bool)  # (B,)
    for _ in range(max_new_tokens):
        feed = {"decoder_input_ids": out, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
        logits = decoder.run(["logits"], feed)[0]  # (B, S, V)
        token = np.where(done, pad_id, logits[:, -1].argmax(-1))  # (B,)
        out = np.concatenate([out, token[:, None]], axis=1)
        done |= np.isin(token, eos_id)
        if done.all():
            break
    return out


class OnnxSeq2Seq(_OnnxSessions):
    """An encoder and a decoder session behind T5's call interface: `model(input_ids, attention_mask,
    decoder_input_ids).logits` (teacher-forced) and `model.generate(...)` (greedy only)."""

    def __init__(self, encoder: Path, decoder: Path, config: transformers.PretrainedConfig) -> None:
        super().__init__(config)
        self.encoder, self.decoder = _session(encoder), _session(decoder)

    def forward(self, input_ids, attention_mask, decoder_input_ids, **_: object) -> SimpleNamespace:
        mask = _int64(attention_mask)  # (B, T)
        hidden = self.encoder.run(None, {"input_ids": _int64(input_ids), "attention_mask": mask})[0]
        feed = {
            "decoder_input_ids": _int64(decoder_input_ids),  # (B, S)
            "encoder_hidden_states": hidden,  # (B, T, H)
            "encoder_attention_mask": mask,
        }
        return SimpleNamespace(logits=torch.from_numpy(self.decoder.run(["logits"], feed)[0]))  # (B, S, V)

    def generate(
        self, input_ids, attention_mask, max_new_tokens: int, do_sample: bool = False, num_beams: int = 1
    ) -> torch.Tensor:
        """Greedy generation, equal to the torch model's `generate(do_sample=False, num_beams=1)`."""
        if do_sample or num_beams != 1:
            raise OnnxExportError("ONNX generation is greedy only: pass do_sample=False, num_beams=1")
        config = self.config
        out = greedy_generate(
            self.encoder,
            self.decoder,
            _int64(input_ids),
            _int64(attention_mask),
            max_new_tokens,
            config.decoder_start_token_id,
            config.eos_token_id,
            config.pad_token_id,
        )
        return torch.from_numpy(out)  # (B, 1 + new)


def _graph_files(path: Path) -> list[Path]:
    """The graph files of an ONNX export named by `path`: a folder (its fp32 graphs) or one of its
    `.onnx` files (that file's variant: `model.int8.onnx`, or `encoder.int8.onnx` with its decoder)."""
    if path.suffix == ".onnx":
        if not path.is_file():
            raise OnnxExportError(
                f"{path}: file not found; give an ONNX export folder or a .onnx file in one"
            )
        if path.name.startswith(("encoder", "decoder")):
            variant = path.name.removeprefix("encoder").removeprefix("decoder")
            return [path.parent / f"encoder{variant}", path.parent / f"decoder{variant}"]
        return [path]
    if (path / ONNX_NAME).is_file():
        return [path / ONNX_NAME]
    if (path / ENCODER_NAME).is_file():
        return [path / ENCODER_NAME, path / DECODER_NAME]
    if (path / WEIGHTS_NAME).is_file():
        raise OnnxExportError(
            f"{path} holds a torch export, not an ONNX one; write one with "
            f"aptune export {path} --format onnx and evaluate its output folder"
        )
    raise OnnxExportError(f"{path} is not an ONNX export (no {ONNX_NAME}); write one with aptune export")


def load_onnx_dir(path: str | os.PathLike) -> tuple[nn.Module, object, dict]:
    """The ONNX model (`OnnxModel`, or `OnnxSeq2Seq` for T5), tokenizer and `aptune.json` of an ONNX
    export: a folder written by `export_onnx` (its fp32 graphs) or a `.onnx` file in one (e.g.
    `model.int8.onnx`; `encoder.int8.onnx` picks the int8 encoder and decoder)."""
    require_onnx()
    files = _graph_files(Path(path))
    folder = files[0].parent
    if not (folder / META_NAME).is_file():
        raise OnnxExportError(
            f"{folder} lacks {META_NAME}; pass a folder written by aptune export --format onnx"
        )
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise OnnxExportError(f"{folder} lacks {', '.join(missing)}; export it again with aptune export")
    meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    config = base_config(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, config=config)
    model = OnnxSeq2Seq(*files, config) if len(files) == 2 else OnnxModel(files[0], config)
    return model, tokenizer, meta
