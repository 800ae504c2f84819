"""Hostile and broken input: exit 4 and one line for what cannot be audited, never an INTERNALERROR or a hang."""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import assert_usage_error, edit_json

Factory = Callable[..., Path]


def _literal(text: str) -> str:
    """`text` as an fnmatch pattern that matches it exactly (brackets are classes there)."""
    return text.replace("[", "[[]")


def _write_safetensors(path: Path, header: object, data: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


# Preflight: files that are not regular files are refused before any open.


def _make_directory(weights: Path) -> None:
    weights.unlink()
    weights.mkdir()


def _make_dangling(weights: Path) -> None:
    weights.unlink()
    weights.symlink_to(weights.parent / "gone.safetensors")


def _make_loop(weights: Path) -> None:
    weights.unlink()
    weights.symlink_to(weights)


def _make_fifo(weights: Path) -> None:
    weights.unlink()
    os.mkfifo(weights)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_make_directory, "is a folder, not a file"),
        (_make_dangling, "is a symlink that leads nowhere (No such file or directory)"),
        (_make_loop, "is a symlink that leads nowhere (Too many levels of symbolic links)"),
        (_make_fifo, "is a named pipe (FIFO), not a regular file"),
    ],
    ids=["directory", "dangling-symlink", "symlink-loop", "fifo"],
)
def test_weights_that_are_not_a_regular_file(
    pytester: pytest.Pytester, bert_copy: Path, damage: Callable[[Path], None], problem: str
) -> None:
    damage(bert_copy / "model.safetensors")
    # The FIFO is never opened, so nothing blocks: a hang would hit the timeout (a guard, not a measure of speed).
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", timeout=120)
    assert_usage_error(result, f"--bert-model '{bert_copy}': model.safetensors {problem}; a checkpoint's files must be readable regular files *")


def test_tokenizer_file_that_is_a_fifo_is_refused(pytester: pytest.Pytester, bert_copy: Path) -> None:
    (bert_copy / "tokenizer.json").unlink()
    os.mkfifo(bert_copy / "tokenizer.json")
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", timeout=60)
    assert_usage_error(result, "*: tokenizer.json is a named pipe (FIFO), not a regular file; *")


@pytest.mark.parametrize("place", ["onnx/model.onnx", "model.onnx", "2_Dense/model.safetensors"])
def test_files_one_level_down_that_are_a_fifo_or_a_loop_are_refused(pytester: pytest.Pytester, bert_copy: Path, place: str) -> None:
    """What the audit opens besides the weights (ONNX exports, sentence-transformers modules) never blocks either."""
    target = bert_copy / place
    target.parent.mkdir(exist_ok=True)
    os.mkfifo(target)
    fifo = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", timeout=60)  # a hang would time out, not hang the suite
    assert_usage_error(fifo, f"*: {place} is a named pipe (FIFO), not a regular file; *")
    target.unlink()
    target.symlink_to(target.name)  # a link to itself
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), f"*: {place} is a symlink that leads nowhere (*")


def test_unreadable_weights(pytester: pytest.Pytester, bert_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file whatever its mode, so the denial is planted where the preflight opens the file.
    weights = bert_copy / "model.safetensors"
    real_open = os.open

    def deny(path: Any, flags: int, *args: Any) -> int:
        if Path(path) == weights:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), "*: model.safetensors cannot be read (Permission denied); *")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ([1, 2, 3], "header is not a JSON object of tensors"),
        ({"w": {"dtype": "F32", "shape": [2]}}, "tensor 'w' has no valid data_offsets (None)"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "tensor 'w': data_offsets span 4 bytes, shape [2] x F32 needs 8"),
        ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, "tensor 'w' has no valid shape ('2')"),
        ({"__metadata__": [1], "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, "__metadata__ is not a map of strings"),
    ],
    ids=["array", "no-offsets", "offsets-vs-shape", "bad-shape", "bad-metadata"],
)
def test_malformed_safetensors_header(pytester: pytest.Pytester, bert_copy: Path, header: object, problem: str) -> None:
    _write_safetensors(bert_copy / "model.safetensors", header, b"\0" * 8)
    assert_usage_error(
        pytester.runpytest(f"--bert-model={bert_copy}"), f"*: model.safetensors is corrupt ({_literal(problem)}); re-download or re-save the checkpoint"
    )


def test_config_nested_past_any_need(pytester: pytest.Pytester, bert_copy: Path) -> None:
    config = json.loads((bert_copy / "config.json").read_text(encoding="utf-8"))
    text = json.dumps(config)[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}"
    (bert_copy / "config.json").write_text(text, encoding="utf-8")
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), "*: config.json nests deeper than 64 levels, which no config needs")


def test_an_integer_past_pythons_digit_limit_names_the_file_and_the_key(pytester: pytest.Pytester, bert_copy: Path) -> None:
    text = (bert_copy / "config.json").read_text(encoding="utf-8")
    (bert_copy / "config.json").write_text(text.rstrip().rstrip("}") + ', "rope_scaling": {"factor": 1' + "0" * 4999 + "}}", encoding="utf-8")
    assert_usage_error(
        pytester.runpytest(f"--bert-model={bert_copy}"),
        "*: config.json holds an integer of 5000 digits at key 'rope_scaling.factor', past Python's limit of 4300 digits (no config needs one)",
    )


def test_configuration_files_that_point_transformers_elsewhere_are_refused(pytester: pytest.Pytester, bert_copy: Path) -> None:
    edit_json(bert_copy / "config.json", configuration_files=["config.4.0.0.json"])
    (bert_copy / "config.4.0.0.json").write_text(json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}), encoding="utf-8")
    assert_usage_error(
        pytester.runpytest(f"--bert-model={bert_copy}"),
        _literal("*: config.json sets configuration_files (['config.4.0.0.json']), which makes transformers read the model's config "
                 "from another file than config.json, one this audit does not check; merge it into config.json and remove the key"),
    )


# Load failures: whatever transformers raises becomes one line naming what failed.


@pytest.mark.parametrize(
    ("change", "line"),
    [
        # transformers 5 refuses it while reading config.json, 4.x while building the layers.
        ({"num_hidden_layers": "2"}, "* could not be loaded (*Error: *); fix the file or re-save the checkpoint"),
        ({"hidden_act": "no-such-activation"}, "the model (BertModel *) could not be loaded (KeyError: 'no-such-activation'); *"),
        ({"architectures": ["GPT2Model"]}, "the model (GPT2Model *) could not be loaded (AttributeError: *); *"),
        ({"pad_token_id": 100000}, "the model (BertModel *) could not be loaded (*Padding_idx must be within num_embeddings*"),
    ],
    ids=["layers-as-string", "unknown-activation", "foreign-architecture", "pad-outside-vocabulary"],
)
def test_config_that_cannot_build_the_model(pytester: pytest.Pytester, bert_copy: Path, change: dict[str, Any], line: str) -> None:
    edit_json(bert_copy / "config.json", **change)
    result = pytester.runpytest(f"--bert-model={bert_copy}")
    assert_usage_error(result, f"--bert-model '{bert_copy}': {line}")
    result.assert_outcomes()  # no errored tests: the run stopped at the load


def test_invalid_tokenizer_json(pytester: pytest.Pytester, bert_copy: Path) -> None:
    (bert_copy / "tokenizer.json").write_text('{"version": "1.0", "model": 5}', encoding="utf-8")
    result = pytester.runpytest(f"--bert-model={bert_copy}")
    assert_usage_error(result, "*: the tokenizer (*) could not be loaded (*); fix the file or re-save the checkpoint")
    result.assert_outcomes()


def test_safetensors_offsets_that_disagree_with_the_shape(pytester: pytest.Pytester, bert_copy: Path) -> None:
    weights = bert_copy / "model.safetensors"
    content = weights.read_bytes()
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + length])
    name = next(key for key in header if key != "__metadata__")
    header[name]["shape"] = [header[name]["shape"][0] + 1, *header[name]["shape"][1:]]
    _write_safetensors(weights, header, content[8 + length :])
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), f"*: model.safetensors is corrupt (tensor {name!r}: data_offsets span *")


def test_load_failure_under_xdist_is_one_line_and_exit_4(pytester: pytest.Pytester, bert_copy: Path) -> None:
    edit_json(bert_copy / "config.json", hidden_act="no-such-activation")
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", "-n", "2", "-p", "xdist", timeout=120)
    assert_usage_error(result, "*: the model (BertModel *) could not be loaded (KeyError: 'no-such-activation'); *")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# Tolerances and the hub.


@pytest.mark.parametrize("values", ["nan 1e-4", "1e-4 -1", "inf 0"])
def test_tolerances_must_be_finite_and_non_negative(pytester: pytest.Pytester, tiny_checkpoint: Factory, values: str) -> None:
    pytester.makeini(f"[pytest]\nbert_tolerances =\n    padding_invariance = {values}\n")
    assert_usage_error(
        pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}"),
        f"bert_tolerances line 'padding_invariance = {values}': ATOL and RTOL must be finite and non-negative",
    )


def _unreachable_hub(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Online mode (no offline variables) with a hub that refuses connections, and `home` as the cache."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(home))


def test_unreachable_hub_fails_fast_and_quietly(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _unreachable_hub(monkeypatch, tmp_path / "hf-home")  # an empty cache: nothing to fall back on
    # No retries (the output says so); the timeout guards against a hang, it does not time the run.
    result = pytester.runpytest_subprocess("--bert-model=bertprobe-tests/does-not-exist", timeout=120)
    assert_usage_error(
        result,
        "--bert-model 'bertprobe-tests/does-not-exist': no such local folder, and the hub id could not be fetched "
        "(http://127.0.0.1:9 unreachable: *); check the path, or run where the Hugging Face Hub is reachable",
    )
    assert "Retry" not in result.stdout.str() + result.stderr.str()


def test_unreachable_hub_loads_a_cached_checkpoint_without_retries(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Factory, tmp_path: Path
) -> None:
    commit = "0" * 40
    repo = tmp_path / "hf-home" / "hub" / "models--bertprobe-tests--cached"
    shutil.copytree(tiny_checkpoint("bert"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    _unreachable_hub(monkeypatch, tmp_path / "hf-home")
    result = pytester.runpytest_subprocess("--bert-model=bertprobe-tests/cached", "-k", "pooler_is_dense", timeout=120)
    result.assert_outcomes(passed=1)
    assert "Retry" not in result.stdout.str() + result.stderr.str()
