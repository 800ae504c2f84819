"""One line per check saying what was measured: the terminal (`-v`), the JSON report and the HTML page all show it.

A failure's line is its message's first; a skip's, its reason; a pass's is read off the check's metrics, in the
words of its claim (a check without a line of its own gets its greatest difference, or its first few numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_bertprobe.checks.tokenizer.coverage import LANGUAGES
from pytest_bertprobe.session import CheckResult

Metrics = dict[str, Any]
_UNREPORTED = ("forward_passes", "examples", "plot", "failing_batch")


def detail(check: CheckResult) -> str:
    """What `check` measured, in one line."""
    metrics = check.metrics
    if "reported" in metrics:
        return f"reported, not failed ({metrics.get('allowed_by', 'allowed')}): {metrics['reported']}"
    if check.outcome in ("failed", "error"):
        return str(metrics.get("message") or check.text or check.outcome).splitlines()[0]
    if "reason" in metrics:
        return str(metrics["reason"])
    describe = _DESCRIBERS.get(check.check)
    try:
        said = describe(metrics) if describe is not None else ""
    except (KeyError, TypeError, ValueError, AttributeError):  # metrics of another shape (an older or partial run)
        said = ""
    return said or _generic(metrics)


def notable(check: CheckResult) -> bool:
    """A passing check whose finding the terminal shows without `-v`: an untrained pooler, scripts lost to [UNK],
    a snapshot written."""
    metrics = check.metrics
    if check.outcome != "passed":
        return False
    if check.check == "golden_snapshot":
        return bool(metrics.get("written"))
    if check.check == "pooler_provenance":
        return metrics.get("verdict") in ("untrained", "missing")
    if check.check == "token_coverage":
        return bool(_reported_scripts(metrics))
    return False


def _generic(metrics: Metrics) -> str:
    """The greatest difference against its tolerance, or the check's first few plain numbers."""
    examples = f" on {metrics['examples']} batches" if isinstance(metrics.get("examples"), int) else ""
    if isinstance(metrics.get("max_abs"), (int, float)):
        atol = metrics.get("atol", 0)
        if metrics.get("relation") == "apart":
            return f"greatest |difference| {metrics['max_abs']:.3g} (more than {atol:g} required){examples}"
        return f"greatest |difference| {metrics['max_abs']:.3g} (tolerance {atol:g}){examples}"
    plain = [(key, value) for key, value in metrics.items() if key not in _UNREPORTED and isinstance(value, (str, int, float, bool))]
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in plain[:4]) + examples


def _provenance(metrics: Metrics) -> str:
    verdict = metrics["verdict"]
    evidence = metrics.get("evidence", {})
    why = str(evidence.get("why") or evidence.get("reason") or evidence.get("file_evidence") or "").removeprefix(f"pooler {verdict}: ")
    layer = next(iter(evidence.get("layers", {}).values()), {})
    ratio = f"; weight std {layer['weight_std']:.2g} ({layer['weight_std_ratio']:.2f} × initializer_range)" if "weight_std_ratio" in layer else ""
    judged = " (reported, not failed: --bert-embedding=pooler fails it)" if verdict == "untrained" else ""
    return f"verdict {verdict}{judged}" + (f": {why}{ratio}" if why else "")


def _reported_scripts(metrics: Metrics) -> list[tuple[str, dict[str, Any]]]:
    """Scripts of a language (not symbols or punctuation) past the [UNK] threshold and not declared, worst first."""
    threshold = float(metrics.get("threshold", 0.1))
    declared = {LANGUAGES[code] for code in metrics.get("declared", ()) if code in LANGUAGES}
    languages = set(LANGUAGES.values()) - declared
    past = [(name, counts) for name, counts in metrics.get("scripts", {}).items() if name in languages and counts["rate"] > threshold]
    return sorted(past, key=lambda pair: -pair[1]["rate"])


def _coverage(metrics: Metrics) -> str:
    threshold = float(metrics.get("threshold", 0.1))
    declared = {LANGUAGES[code] for code in metrics.get("declared", ()) if code in LANGUAGES}
    languages = set(LANGUAGES.values())
    under = [name for name, counts in metrics.get("scripts", {}).items() if name in languages and counts["rate"] <= threshold]
    covered = f"{len(under)} script{'s' if len(under) != 1 else ''} at or under {threshold:.0%} [UNK]"
    if declared:
        covered += f" (declared: {', '.join(sorted(declared))})"
    past = _reported_scripts(metrics)
    if not past:
        return covered
    lost = ", ".join(f"{name} {counts['rate']:.0%} ({counts['unknown']}/{counts['characters']})" for name, counts in past)
    codes = sorted({next(code for code, script in LANGUAGES.items() if script == name) for name, _ in past})
    return f"[UNK] past {threshold:.0%}, reported, not failed: {lost}; --bert-languages={','.join(codes)} would fail them; {covered}"


def _weights_loaded(metrics: Metrics) -> str:
    parts = [f"{metrics['loaded']} of {metrics['tensors_in_file']} stored tensors loaded, each equal to {metrics['files']}"]
    for key, label in (("tied", "tied"), ("computed", "computed buffers"), ("unused", "unused by the model")):
        if metrics.get(key):
            parts.append(f"{len(metrics[key])} {label}")
    return "; ".join(parts)


def _special_ids(metrics: Metrics) -> str:
    ids = metrics["special_token_ids"]
    return f"{len(ids)} special tokens, each its own id: " + ", ".join(f"{token} {number}" for token, number in list(ids.items())[:6])


def _files_agree(metrics: Metrics) -> str:
    files = " and ".join(f"{name} ({count} tokens)" for name, count in metrics["files"].items())
    return f"{files} agree; {len(metrics['tokenizers'])} tokenizers give the same ids on the sentences tried"


def _casing(metrics: Metrics) -> str:
    lowers = "lower-cases" if metrics["tokenizer_lowercases"] else "keeps case"
    worst = max(metrics.get("title_case_unk_rate", {}).values(), default=0.0)
    return (
        f"tokenizer {lowers}; {metrics['cased_vocabulary']} of {metrics['multi_letter_vocabulary']} vocabulary words cased; "
        f"title-case text {worst:.0%} [UNK] at worst"
    )


def _embedding(metrics: Metrics) -> str:
    text = f"{metrics['embedding']} embedding, {metrics['dimension']} dimensions, " + _generic({**metrics, "examples": None})
    library = metrics.get("library_gap")
    if isinstance(library, dict) and "max_abs" in library:
        text += f"; {metrics.get('computed_by', 'the library')} {metrics.get('compared', 'encode()')}: |difference| {library['max_abs']:.3g}"
    return text


def _onnx(metrics: Metrics) -> str:
    if "cosine_min" in metrics:
        return (
            f"{metrics.get('export', 'export')} (quantized): worst cosine {metrics['cosine_min']:.2f}, Spearman {metrics['spearman']:.2f}, "
            f"top-{metrics.get('top_k', 5)} overlap {metrics['top_k_overlap']:.2f} over {metrics.get('sentences', '?')} sentences"
        )
    batches = f" on {metrics['batches']} batches" if "batches" in metrics else ""
    return f"{metrics.get('export', 'export')}: {_generic({**metrics, 'examples': None})}{batches}"


_DESCRIBERS: dict[str, Callable[[Metrics], str]] = {
    "pooler_provenance": _provenance,
    "token_coverage": _coverage,
    "weights_loaded": _weights_loaded,
    "weights_finite": lambda m: f"{m['tensors']} tensors in {m['files']}, none with NaN/inf",
    "outputs_finite": lambda m: f"every value of {len(m['tensors'])} outputs finite" + _generic({"examples": m.get("examples")}),
    "pooler_range": lambda m: f"pooler_output within [-1, 1], greatest excess {m['max_abs']:.3g}" + _generic({"examples": m.get("examples")}),
    "determinism": lambda m: f"eval mode; two passes differ by {m['max_abs']:.3g} at most (tolerance {m.get('atol', 0):g})",
    "save_load_round_trip": lambda m: f"outputs after save_pretrained and from_pretrained differ by {m['max_abs']:.3g} (tolerance {m.get('atol', 0):g})",
    "tokenizer_special_tokens": lambda m: f"{m['first_token']} opens and {m['last_token']} closes every input; {m['misplaced']} misplaced",
    "tokenizer_padding_side": lambda m: f"pads on the {m['padding_side']}: {m['left_padded_rows']} of {m['rows']} rows padded on the left",
    "tokenizer_input_names": lambda m: f"forward takes {', '.join(m['produced'])}",
    "tokenizer_ids_in_embeddings": lambda m: f"greatest token id {m['max_id']} < {m['embedding_rows']} embedding rows",
    "tokenizer_token_types": lambda m: f"pair token types up to {m['max_type_id']} < type_vocab_size {m['type_vocab_size']}",
    "tokenizer_max_length": lambda m: (
        f"model_max_length {m['model_max_length']} fits {m['usable_positions']} usable positions; a pass at {m['forward_length']} tokens ran"
    ),
    "tokenizer_pad_id": lambda m: f"pad id {m['tokenizer_pad_token_id']} == config.pad_token_id {m['config_pad_token_id']}",
    "tokenizer_special_ids": _special_ids,
    "tokenizer_files_agree": _files_agree,
    "tokenizer_casing": _casing,
    "label_map": lambda m: f"{m['labels']} labels agree: " + ", ".join(str(name) for name in list(m.get("names") or [])[:5]),
    "head_relation": lambda m: f"{m['head']}: {_generic(m)}",
    "embedding_contract": _embedding,
    "onnx_agreement": _onnx,
    "golden_snapshot": lambda m: f"snapshot written to {m['snapshot']}" if m.get("written") else _generic(m),
}
