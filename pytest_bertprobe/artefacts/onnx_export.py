"""ONNX exports of a checkpoint: found where the Hub puts them, run under onnxruntime, compared with the checkpoint.

A float32 export must reproduce the checkpoint's outputs at float32 tolerances on batches of every shape the
audit generates: the legacy tracer and static shapes bake one batch shape into the graph, and a converter can
export other weights. A quantized export cannot match numerically; `onnx_behaviour` judges it by what its
embeddings do instead. onnxruntime and onnx are imported only when an export is audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.compare import Gap, Mismatch, measure, not_close_lines, quote
from pytest_bertprobe.errors import CheckFailure, first_line
from pytest_bertprobe.forward import cache
from pytest_bertprobe.tolerances import model_dtype, tolerance_for

if TYPE_CHECKING:
    import torch

CHECK = "onnx_agreement"
INSTALL_HINT = "pip install pytest-bertprobe[onnx]"
HIDDEN_OUTPUTS = ("last_hidden_state", "token_embeddings")  # one vector per token: compared at real tokens only
KNOWN_OUTPUTS = (*HIDDEN_OUTPUTS, "pooler_output", "sentence_embedding")
# Integer kernels and (de)quantization: what quantize_dynamic / quantize_static and optimum's quantizer emit.
QUANTIZED_OPS = frozenset({
    "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul",
    "QLinearConv", "QLinearAdd", "QLinearMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
    "QEmbedLayerNormalization", "QGemm", "MatMulNBits", "GatherBlockQuantized",
})  # fmt: skip
_QUANTIZED_TYPES = {"INT8", "UINT8", "INT4", "UINT4"}


def find_exports(folder: Path | None, extra: Sequence[str | Path] = ()) -> list[Path]:
    """The checkpoint's exports (`onnx/*.onnx`, `model.onnx` at its root), then the `--bert-onnx` files."""
    found: list[Path] = []
    if folder is not None:
        found += sorted((folder / "onnx").glob("*.onnx")) + ([folder / "model.onnx"] if (folder / "model.onnx").is_file() else [])
    found += [Path(path).resolve() for path in extra]
    return list(dict.fromkeys(path.resolve() for path in found))


def export_label(path: Path, folder: Path | None) -> str:
    """How a test id and a message name an export: relative to the checkpoint folder when it lies inside."""
    if folder is not None and path.is_relative_to(folder):
        return path.relative_to(folder).as_posix()
    return path.name


def export_params(sources: Sequence[Any], extra: Sequence[str]) -> tuple[list[Path | None], list[str]]:
    """Every checkpoint's exports and their test ids; None ("no-export") where a checkpoint has none."""
    exports: dict[Path | None, str] = {}
    for source in sources:
        found = find_exports(source.local_path, extra)
        for path in found:
            exports.setdefault(path, export_label(path, source.local_path))
        if not found:
            exports.setdefault(None, "no-export")
    return list(exports), list(exports.values())


def belongs(source: Any, export: Path | None, extra: Sequence[str]) -> bool:
    """Whether `export` is one of `source`'s exports (None: whether it has none); other pairs are deselected."""
    found = find_exports(source.local_path, extra)
    return export in found if export is not None else not found


def missing_runtime() -> str | None:
    """Why exports cannot be audited here (onnxruntime or onnx not installed), or None."""
    import importlib.util

    absent = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(absent)} not installed: {INSTALL_HINT}" if absent else None


@dataclass
class Export:
    """An ONNX file opened under onnxruntime: its inputs (name -> element type), outputs and quantization."""

    path: Path
    label: str
    session: Any
    inputs: dict[str, str]
    outputs: list[str]
    quantized: str | None  # the evidence ("14 MatMulInteger ops, 37 int8 initializers"), None for a float export
    provider: str

    def metrics(self) -> dict[str, Any]:
        """What a report says about the file itself."""
        return {"export": self.label, "path": str(self.path), "provider": self.provider,
                "inputs": sorted(self.inputs), "outputs": list(self.outputs), "quantized": self.quantized}  # fmt: skip


def open_export(path: Path, label: str, device: Any) -> Export:
    """Open `path` with onnxruntime (CUDA where the model runs on CUDA and the provider exists, else CPU)."""
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if getattr(device, "type", str(device)) == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are the exporter's business
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # noqa: BLE001 - any load failure is this check's finding
        raise CheckFailure(
            f"ONNX export {label} could not be opened by onnxruntime {onnxruntime.__version__}: {first_line(error)}\n"
            "Hint: re-export the checkpoint; check that the file (and its .onnx.data) is complete"
        ) from None
    return Export(
        path=path, label=label, session=session,
        inputs={node.name: node.type for node in session.get_inputs()},
        outputs=[node.name for node in session.get_outputs()],
        quantized=quantization_evidence(path), provider=session.get_providers()[0],
    )  # fmt: skip


def quantization_evidence(path: Path) -> str | None:
    """Integer ops or integer initializers in the graph, counted; None when the export is float throughout."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    ops: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
    integer = sum(1 for tensor in graph.initializer if onnx.TensorProto.DataType.Name(tensor.data_type) in _QUANTIZED_TYPES)
    parts = [f"{count} {op} ops" for op, count in sorted(ops.items())] + ([f"{integer} int8/uint8 initializers"] if integer else [])
    return ", ".join(parts) or None


def _sentences(count: int) -> str:
    return f"{count} sentence{'s' if count != 1 else ''}"


_NUMPY_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32", "tensor(bool)": "bool"}


def run_export(export: Export, inputs: Mapping[str, torch.Tensor], sentences: Sequence[str]) -> dict[str, torch.Tensor]:
    """The export's outputs for tokenizer outputs `inputs`, fed by name; fails naming inputs the tokenizer lacks."""
    __tracebackhide__ = True
    import torch

    missing = [name for name in export.inputs if name not in inputs]
    if missing:
        raise CheckFailure(
            f"ONNX export {export.label} needs inputs the tokenizer does not produce: {', '.join(missing)} "
            f"(the tokenizer gives {', '.join(inputs)}; the export takes {', '.join(export.inputs)}).\n"
            "Hint: a runtime feeding this export from the tokenizer cannot run it; export with the tokenizer's "
            "model_input_names, or fix the tokenizer's model_input_names"
        )
    feed = {name: inputs[name].cpu().numpy().astype(_NUMPY_TYPES.get(kind, "int64")) for name, kind in export.inputs.items()}
    try:
        values = export.session.run(None, feed)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types; every one is this check's finding
        shape = tuple(inputs["input_ids"].shape)
        raise CheckFailure(
            f"ONNX export {export.label} failed on a batch of shape {shape} ({_sentences(len(sentences))} × {shape[-1]} tokens): "
            f"{type(error).__name__}: {' '.join(str(error).split())}\nFailing batch: [{', '.join(quote(s) for s in sentences)}]\n"
            f"Hint: {_run_hint(str(error))}"
        ) from None
    return {name: torch.from_numpy(value) for name, value in zip(export.outputs, values)}


def _run_hint(error: str) -> str:
    if "dimension" in error.lower():
        return ("the graph is specialised to the shape it was exported with: export with dynamic batch and "
                "sequence axes (torch.onnx.export(..., dynamo=True, dynamic_shapes=...))")  # fmt: skip
    return "onnxruntime cannot run this input through the graph: re-export it, or check the opset against onnxruntime's"


def expected_outputs(model: Any, inputs: Mapping[str, torch.Tensor], sentence_embedding: Any) -> dict[str, torch.Tensor]:
    """The checkpoint's value for each output name an export may have (`sentence_embedding(forward, mask)` for the last)."""
    result = cache.forward(model, inputs)
    expected = {"last_hidden_state": result.last_hidden_state, "token_embeddings": result.last_hidden_state,
                "sentence_embedding": sentence_embedding(result, inputs.get("attention_mask"))}  # fmt: skip
    if result.pooler_output is not None:
        expected["pooler_output"] = result.pooler_output
    return expected


def at_real_tokens(tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Padding positions set to zero: what they hold is nobody's business (and differs by attention kernel)."""
    if mask is None or tensor.dim() != 3:
        return tensor
    return tensor * mask.to(tensor.device, tensor.dtype).unsqueeze(-1)


@dataclass(frozen=True)
class BatchGap:
    """One output's gap on one batch, with the batch it was measured on."""

    output: str
    gap: Gap
    sentences: tuple[str, ...]
    shape: tuple[int, ...]

    @property
    def severity(self) -> float:
        """How far past (or how close to) the tolerance: greatest difference over atol."""
        return self.gap.max_abs / max(self.gap.atol, 1e-30)


def assert_export_agrees(
    export: Export, model: Any, batches: Sequence[tuple[Sequence[str], Mapping[str, torch.Tensor]]], sentence_embedding: Any
) -> dict[str, Any]:
    """Every output of a float export within float32 tolerance of the checkpoint on every batch; the worst is named."""
    __tracebackhide__ = True
    compared = [name for name in export.outputs if name in KNOWN_OUTPUTS]
    if not compared:
        raise CheckFailure(
            f"ONNX export {export.label} has no output the audit can compare (outputs: {', '.join(export.outputs)}; "
            f"known: {', '.join(KNOWN_OUTPUTS)}).\nHint: name the outputs when exporting (output_names=[...])"
        )
    dtype = model_dtype(model)
    tolerance = tolerance_for(CHECK, dtype)
    gaps: list[BatchGap] = []
    for sentences, inputs in batches:
        actual, expected = run_export(export, inputs, sentences), expected_outputs(model, inputs, sentence_embedding)
        mask = inputs.get("attention_mask")
        for name in compared:
            if name not in expected:
                raise CheckFailure(f"ONNX export {export.label} has {name}, but the checkpoint returns none (pooler_output=None)")
            theirs, ours = at_real_tokens(actual[name], mask), at_real_tokens(expected[name], mask).cpu().float()
            gaps.append(BatchGap(name, measure(theirs.float(), ours, tolerance), tuple(sentences), tuple(inputs["input_ids"].shape)))
    worst = max(gaps, key=lambda batch_gap: batch_gap.severity)
    failing = {(g.sentences, g.shape) for g in gaps if g.gap.mismatched}
    metrics = {**export.metrics(), **worst.gap.metrics(), "output": worst.output, "batches": len(batches), "compared_at": dtype,
               "worst_batch_shape": list(worst.shape), "compared": compared,
               "worst_sentence": quote(worst.sentences[worst.gap.max_abs_index[0] if worst.gap.max_abs_index else 0]),
               "not_compared": [name for name in export.outputs if name not in KNOWN_OUTPUTS],
               "ignored_inputs": [name for name in batches[0][1] if name not in export.inputs] if batches else []}  # fmt: skip
    per_output = {name: max(g.gap.max_abs for g in gaps if g.output == name) for name in compared}
    metrics["per_output"] = [[name, value] for name, value in per_output.items()]  # the HTML report's plot
    metrics["diverging_outputs"] = [name for name in compared if any(g.gap.mismatched for g in gaps if g.output == name)]
    if failing:
        mismatch = Mismatch(_disagreement_message(export, worst, len(failing), gaps, len(batches), metrics), worst.gap)
        mismatch.metrics = metrics  # the whole comparison, not only the worst gap
        raise mismatch
    return metrics


def _disagreement_message(export: Export, worst: BatchGap, failing: int, gaps: list[BatchGap], batches: int, metrics: dict[str, Any]) -> str:
    gap = worst.gap
    row = gap.max_abs_index[0] if gap.max_abs_index else 0
    bad = {(g.sentences, g.shape) for g in gaps if g.gap.mismatched}
    passing_shapes = sorted({g.shape for g in gaps if (g.sentences, g.shape) not in bad})
    lines = [
        *not_close_lines(f"ONNX export {export.label} vs the checkpoint, {worst.output}", gap),
        f"Worst sentence: {row} {quote(worst.sentences[row])}, in a batch of shape {worst.shape} "
        f"({_sentences(len(worst.sentences))} × {worst.shape[-1]} tokens)",
        f"Compared at {metrics['compared_at']} tolerances on {batches} batches; {failing} disagree"
        + (f"; those that agree have shapes {', '.join(map(str, passing_shapes[:4]))}" if passing_shapes else ""),
    ]
    if metrics["ignored_inputs"]:
        lines.append(f"Ignored inputs (the tokenizer gives them, the export takes none): {', '.join(metrics['ignored_inputs'])}")
    return "\n".join([*lines, "Hint: " + _hint(passing_shapes, worst)])


def _hint(passing_shapes: list[tuple[int, ...]], worst: BatchGap) -> str:
    if passing_shapes:
        return (
            "some batches agree and others do not: either the export baked one shape's logic (the attention mask, "
            "positions) into the graph, as tracing does, and needs re-exporting with torch.onnx.export(..., dynamo=True, "
            "dynamic_shapes=...); or it holds slightly different weights, which show on some inputs only"
        )
    return (
        f"{worst.output} disagrees on every batch: the export holds other weights or another network than the "
        "checkpoint (exported before a fine-tune or from another revision, a changed weight); re-export it from this checkpoint"
    )


def export_forward(actual: Mapping[str, torch.Tensor], inputs: Mapping[str, torch.Tensor]) -> cache.Forward:
    """The export's outputs in the shape of a forward pass, so the declared embedding is computed alike on both sides."""
    hidden = next((actual[name] for name in HIDDEN_OUTPUTS if name in actual), None)
    if hidden is None:
        hidden = actual.get("sentence_embedding", next(iter(actual.values()))).unsqueeze(1)
    return cache.Forward(inputs=inputs, last_hidden_state=hidden, pooler_output=actual.get("pooler_output"), hidden_states=(), pooler_input=None)


def assert_quantized_export_behaves(
    export: Export, model: Any, batches: Sequence[tuple[Sequence[str], Mapping[str, torch.Tensor]]], sentence_embedding: Any
) -> dict[str, Any]:
    """A quantized export's sentence embeddings rank and retrieve like the checkpoint's (see `onnx_behaviour`)."""
    __tracebackhide__ = True
    from pytest_bertprobe.artefacts import onnx_quantized as onnx_behaviour

    embeddings: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for sentences, inputs in batches:
        actual, result = run_export(export, inputs, sentences), cache.forward(model, inputs)
        mask = inputs.get("attention_mask")
        theirs = actual["sentence_embedding"] if "sentence_embedding" in actual else sentence_embedding(export_forward(actual, inputs), mask)
        onnx_behaviour.collect(embeddings, sentences, sentence_embedding(result, mask), theirs)
    try:
        measured = onnx_behaviour.assert_behaves(export.label, str(export.quantized), embeddings)
    except CheckFailure as failure:
        failure.metrics = {**export.metrics(), **(failure.metrics or {}), "batches": len(batches)}
        raise
    return {**export.metrics(), **measured, "batches": len(batches)}


def assert_export_matches(
    export: Export, model: Any, batches: Sequence[tuple[Sequence[str], Mapping[str, torch.Tensor]]], sentence_embedding: Any
) -> dict[str, Any]:
    """A float export agrees numerically; a quantized one is judged by behaviour."""
    __tracebackhide__ = True
    check = assert_quantized_export_behaves if export.quantized else assert_export_agrees
    return check(export, model, batches, sentence_embedding)
