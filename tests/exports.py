"""ONNX exports of checkpoints for the tests, made the ways users make them (needs the onnx extra and onnxscript)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRACED_SENTENCES = ("hello world", "the weather today")  # the batch a traced export is specialised to: 2 × 5 tokens on BERT


def _plain_outputs(model: Any, names: list[str], sentence_transformers: bool) -> Any:
    """The encoder taking positional tensors and returning plain ones, named as optimum names them; for a
    sentence-transformers export, token embeddings and their normalized mean (a Pooling + Normalize pipeline)."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            output = self.model(**dict(zip(names, inputs)))
            if sentence_transformers:
                mask = inputs[names.index("attention_mask")].unsqueeze(-1).to(output.last_hidden_state.dtype)
                mean = (output.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                return output.last_hidden_state, torch.nn.functional.normalize(mean, dim=-1)
            return tuple(value for value in (output.last_hidden_state, output.pooler_output) if value is not None)

    return Encoder().eval()  # exporting restores the wrapper's mode on everything inside it


def export_onnx(
    folder: Path, target: Path, *, dynamo: bool = True, edit: Callable[[Any], None] | None = None, sentence_transformers: bool = False
) -> Path:
    """Export the checkpoint at `folder` to `target`: dynamo with dynamic batch and sequence, or the legacy tracer with
    the shapes it was traced with (specialised to `TRACED_SENTENCES`); `edit(model)` changes the model first;
    `sentence_transformers` exports its outputs (token and mean-pooled, normalized sentence embeddings)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    warnings.filterwarnings("ignore", module=r"torch\.onnx.*|transformers.*")  # the exporters' chatter, not the test's
    model = AutoModel.from_pretrained(folder).eval()
    if edit is not None:
        with torch.no_grad():
            edit(model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer(list(TRACED_SENTENCES), padding=True, return_tensors="pt")
    names = [name for name in encoded if name in inspect.signature(model.forward).parameters]
    outputs = ["last_hidden_state", "pooler_output"] if model.base_model.pooler is not None else ["last_hidden_state"]
    if sentence_transformers:
        outputs = ["token_embeddings", "sentence_embedding"]
    target.parent.mkdir(parents=True, exist_ok=True)
    arguments = tuple(encoded[name] for name in names)
    if dynamo:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        shapes = (tuple({0: batch, 1: sequence} for _ in names),)  # one entry: the *inputs tuple
        program = torch.onnx.export(_plain_outputs(model, names, sentence_transformers), arguments, input_names=names, output_names=outputs,
                                    dynamo=True, dynamic_shapes=shapes, verbose=False)  # fmt: skip
        program.save(str(target))
    else:
        torch.onnx.export(_plain_outputs(model, names, sentence_transformers), arguments, str(target), input_names=names, output_names=outputs, dynamo=False)
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """onnxruntime's dynamic int8 quantization of a float export (int8 weights, integer MatMuls)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target
