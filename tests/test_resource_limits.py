"""Sizes before allocation: resource bombs are refused with one line, in seconds and well under 1 GB of memory.

Each bomb is built in tmp_path and audited in a child process whose peak resident memory the test reads
(`RUSAGE_CHILDREN` of a wrapper that runs only that child); a hang fails by the timeout.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint import sizes
from pytest_bertprobe.checkpoint.weight_files import MAX_HEADER_BYTES, MAX_TENSORS
from tests.helpers import edit_json

pytestmark = pytest.mark.e2e

_MEASURED = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"ret": run.returncode, "out": run.stdout, "err": run.stderr,
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""
_GB = 1024.0


def _measured(command: list[str], cwd: Path, timeout: float = 120) -> dict[str, Any]:
    """Run `command` as the only child of a wrapper; its exit code, output and peak RSS in MB."""
    done = subprocess.run([sys.executable, "-c", _MEASURED, *command], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(done.stdout)


def _audit(folder: Path, cwd: Path, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--bert-model={folder}", "--bert-allow-untrained", *args]
    return _measured(command, cwd)


def _refused(run: dict[str, Any], line: str) -> None:
    """Exit 4 with exactly one ERROR line containing `line`, no traceback, under 1 GB peak."""
    __tracebackhide__ = True
    errors = [text for text in run["err"].splitlines() if text.startswith("ERROR:")]
    assert run["ret"] == 4 and len(errors) == 1, run["out"][-3000:] + run["err"][-3000:]
    assert line in errors[0], errors[0]
    assert "Traceback" not in run["out"] + run["err"]
    assert run["peak_mb"] < _GB, run["peak_mb"]
    print(f"peak RSS {run['peak_mb']:.0f} MB")  # shown with -rP: the figures docs/DESIGN.md states


def _write_header(path: Path, header: dict[str, Any]) -> None:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded)


def test_a_safetensors_header_past_the_limit_is_not_parsed(bert_copy: Path, tmp_path: Path) -> None:
    """A 90 MB header (1.17 million empty tensors' worth) is refused from its 8-byte length alone."""
    weights = bert_copy / "model.safetensors"
    with weights.open("wb") as handle:
        handle.write(struct.pack("<Q", 90_000_000))
        handle.truncate(8 + 90_000_000)  # sparse: the header is never read
    _refused(_audit(bert_copy, tmp_path), f"model.safetensors declares a header of 90,000,000 bytes, past the limit of {MAX_HEADER_BYTES >> 20} MiB")


def test_more_tensors_than_the_limit_are_refused(bert_copy: Path, tmp_path: Path) -> None:
    count = MAX_TENSORS + 20_000
    _write_header(bert_copy / "model.safetensors", {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)})
    _refused(_audit(bert_copy, tmp_path), f"model.safetensors declares {count:,} tensors, past the limit of {MAX_TENSORS:,}")


def test_two_million_added_tokens_are_refused_before_the_tokenizer_loads(bert_copy: Path, tmp_path: Path) -> None:
    tokenizer = json.loads((bert_copy / "tokenizer.json").read_text(encoding="utf-8"))
    head, tail = json.dumps({**tokenizer, "added_tokens": []}).split('"added_tokens": []', 1)
    with (bert_copy / "tokenizer.json").open("w", encoding="utf-8") as handle:  # about 80 MB, written in pieces
        handle.write(head + '"added_tokens": [')
        for start in range(0, 2_000_000, 100_000):
            handle.write(",".join(f'{{"id":{i + 1000},"content":"<t{i}>"}}' for i in range(start, start + 100_000)) + ("," if start < 1_900_000 else ""))
        handle.write("]" + tail)
    _refused(_audit(bert_copy, tmp_path), f"tokenizer.json holds 2,000,000 added tokens, past the limit of {sizes.MAX_ADDED_TOKENS:,}")


def test_a_tokenizer_file_past_the_size_limit_is_not_read(bert_copy: Path, tmp_path: Path) -> None:
    with (bert_copy / "vocab.txt").open("wb") as handle:
        handle.truncate(sizes.MAX_FILE_BYTES + 1)  # sparse
    _refused(_audit(bert_copy, tmp_path), "vocab.txt is 256.0 MiB, past the limit of 256.0 MiB for a config or tokenizer file")


def test_layers_the_weights_do_not_hold_are_refused_before_torch(bert_copy: Path, tmp_path: Path) -> None:
    edit_json(bert_copy / "config.json", num_hidden_layers=5000)
    run = _audit(bert_copy, tmp_path)
    _refused(run, "config.json sets num_hidden_layers: 5000, but the weights hold weights for 2 (encoder.layer.0-1); loading would build 4,998 layers")
    assert run["peak_mb"] < 256  # refused from the files alone: torch was never imported


def test_sizes_the_weights_do_not_have_are_refused_before_allocation(bert_copy: Path, tmp_path: Path) -> None:
    edit_json(bert_copy / "config.json", intermediate_size=4_000_000)  # 128 million values a layer, on the meta device only
    _refused(
        _audit(bert_copy, tmp_path),
        "config.json's sizes disagree with the weights: encoder.layer.0.intermediate.dense.weight is [4000000, 32] by the config "
        "(intermediate_size: 4000000), [37, 32] in the file",
    )


def test_far_more_missing_weights_than_the_file_holds_are_refused(tiny_checkpoint: Any, tmp_path: Path) -> None:
    """60 layers asked for (within the layer slack), one stored: 47 million values the file lacks, refused at load."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    folder = Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "one-layer"))
    vocabulary = json.loads((folder / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    config = BertConfig(vocab_size=vocabulary, hidden_size=256, num_hidden_layers=1, num_attention_heads=4, intermediate_size=1024,
                        max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    edit_json(folder / "config.json", num_hidden_layers=60)
    _refused(_audit(folder, tmp_path), "config.json asks for 46,595,840 weight values the file does not hold (944 tensors, e.g. encoder.layer.1.")


def test_a_load_past_the_memory_limit_is_refused(tiny_checkpoint: Any, tmp_path: Path) -> None:
    run = _audit(tiny_checkpoint("bert"), tmp_path, "--bert-max-memory=64K")
    _refused(run, "loading needs an estimated ")
    assert "more than --bert-max-memory allows (64.0 KiB); nothing was loaded" in run["err"]
    healthy = _audit(tiny_checkpoint("bert"), tmp_path, "--bert-max-memory=1G", "-k", "pooler_is_dense")
    assert healthy["ret"] == 0, healthy["out"][-2000:]


def test_the_memory_limit_is_a_size(pytester: pytest.Pytester, tiny_checkpoint: Any) -> None:
    from tests.helpers import assert_usage_error

    assert_usage_error(
        pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-max-memory=lots"),
        "--bert-max-memory=lots: give a size such as 8G, 512M or 1.5GiB (powers of 1024)",
    )


def test_sizes_parse_and_memory_is_measured() -> None:
    from pytest_bertprobe.options.values import parse_size

    assert [parse_size(text) for text in ("512M", "8G", "1.5GiB", "64k", "1000")] == [512 << 20, 8 << 30, 3 << 29, 64 << 10, 1000]
    for text in ("", "-1G", "0", "8X", "nan"):
        with pytest.raises(ValueError):
            parse_size(text)
    available = sizes.available_memory()
    assert available is None or available > 0


_SCAN = """
import resource, sys
from transformers import AutoModel
from pytest_bertprobe import assert_weights_finite
model = AutoModel.from_pretrained(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    assert_weights_finite(model, checkpoint_path=sys.argv[1])
except AssertionError as failure:
    print(str(failure).splitlines()[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_weights_finite_scans_a_huge_tensor_in_chunks(bert_copy: Path, tmp_path: Path) -> None:
    """One 256 MiB tensor: the scan's peak is the mapped file plus a chunk, not a float64 copy of it (512 MiB more)."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(bert_copy / "model.safetensors")
    tensors["extra.big"] = torch.zeros(64 << 20)
    tensors["extra.big"][-1] = float("inf")  # in the last chunk: every chunk is read
    save_file(tensors, bert_copy / "model.safetensors", metadata={"format": "pt"})
    done = subprocess.run([sys.executable, "-c", _SCAN, str(bert_copy)], capture_output=True, text=True, timeout=120, check=True)
    found, grown = done.stdout.strip().splitlines()
    assert found.strip() == "extra.big: 1 of 67108864 values non-finite, first inf at [67108863]"
    print(f"grew {float(grown):.0f} MB while scanning")
    assert float(grown) < 256 + 96, grown  # MiB over what loading the model took: the mapped tensor and one chunk
