"""The checkpoint folder is a boundary: nothing outside it is read or printed, and no file a run opens can block.

Each case builds its checkpoint in tmp_path; a run that hangs fails by the subprocess timeout.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import assert_usage_error

SECRET = "root:x:0:0:bertprobe-secret-line:/root:/bin/bash"


def _secret_file(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "passwd"
    secret.write_text("\n".join([SECRET, "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin"]) + "\n", encoding="utf-8")
    return secret


def _assert_not_leaked(result: pytest.RunResult) -> None:
    assert "bertprobe-secret-line" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("name", ["vocab.txt", "tokenizer.json", "config.json", "model.safetensors", "1_Pooling/config.json"])
def test_a_file_that_leads_outside_the_folder_is_refused_before_it_is_read(
    pytester: pytest.Pytester, bert_copy: Path, tmp_path: Path, name: str
) -> None:
    secret = _secret_file(tmp_path)
    target = bert_copy / name
    target.parent.mkdir(exist_ok=True)
    target.unlink(missing_ok=True)
    target.symlink_to(secret)
    result = pytester.runpytest(f"--bert-model={bert_copy}", f"--bert-report-json={tmp_path / 'report.json'}", f"--junitxml={tmp_path / 'junit.xml'}")
    assert_usage_error(
        result,
        f"--bert-model '{bert_copy}': {name} is a symlink to {secret}, outside the checkpoint folder {bert_copy}; it was not read. "
        "A checkpoint's files must lie inside its folder: *",
    )
    _assert_not_leaked(result)
    assert not (tmp_path / "report.json").exists()


def test_the_passwd_leak_through_tokenizer_files_agree_is_closed(pytester: pytest.Pytester, bert_copy: Path, tmp_path: Path) -> None:
    """Before: vocab.txt -> a passwd file printed its lines under tokenizer_files_agree, in every report."""
    (bert_copy / "vocab.txt").unlink(missing_ok=True)  # transformers 4.x saves one beside tokenizer.json
    (bert_copy / "vocab.txt").symlink_to(_secret_file(tmp_path))
    result = pytester.runpytest(f"--bert-model={bert_copy}", "-k", "tokenizer_files_agree", f"--bert-report-json={tmp_path / 'r.json'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _assert_not_leaked(result)


def test_symlinks_within_the_folder_and_a_hub_cache_layout_are_fine(
    pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    inside = Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "inside"))
    (inside / "files").mkdir()
    shutil.move(inside / "tokenizer.json", inside / "files" / "tokenizer.json")
    (inside / "tokenizer.json").symlink_to("files/tokenizer.json")  # a link that stays inside
    # The hub cache: snapshots/<commit>/<file> -> ../../blobs/<hash>
    repo = tmp_path / "hub" / "models--bertprobe--tiny"
    snapshot, blobs = repo / "snapshots" / ("0" * 40), repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for index, path in enumerate(sorted(tiny_checkpoint("bert").iterdir())):
        shutil.copy(path, blobs / f"blob{index}")
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", f"blob{index}"))
    result = pytester.runpytest(f"--bert-model={inside}", f"--bert-model={snapshot}", "-k", "pooler_is_dense")
    result.assert_outcomes(passed=2)


def _sentence_transformers(folder: Path, pooling_path: str) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": pooling_path, "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")


def test_a_module_folder_outside_the_checkpoint_is_refused_without_opening_its_fifo(
    pytester: pytest.Pytester, bert_copy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside_pool"
    outside.mkdir()
    os.mkfifo(outside / "config.json")  # sentence-transformers' reader, or the plugin's, would block here forever
    _sentence_transformers(bert_copy, "../outside_pool")
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", timeout=60)
    assert_usage_error(result, f"*: ../outside_pool leads to {outside}, outside the checkpoint folder {bert_copy}; it was not read. *")


@pytest.mark.parametrize("place", ["modules/pool/config.json", "README.md"])
def test_a_fifo_anywhere_a_run_reads_is_refused(pytester: pytest.Pytester, bert_copy: Path, place: str) -> None:
    """Deeper than the folder's first level (a module folder modules.json names), or a file sentence-transformers reads."""
    _sentence_transformers(bert_copy, "modules/pool")
    (bert_copy / "modules" / "pool").mkdir(parents=True)
    os.mkfifo(bert_copy / place)
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", timeout=60)
    assert_usage_error(result, f"*: {place} is a named pipe (FIFO), not a regular file; *")


def test_onnx_external_data_outside_the_folder_is_refused(pytester: pytest.Pytester, bert_copy: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    secret = _secret_file(tmp_path)
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": f"../../outside/{secret.name}", "offset": "0", "length": "16"}.items():
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["input_ids", "w"], ["last_hidden_state"])], "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [4])], initializer=[weight],
    )  # fmt: skip
    (bert_copy / "onnx").mkdir()
    onnx.save(helper.make_model(graph), str(bert_copy / "onnx" / "model.onnx"))
    result = pytester.runpytest(f"--bert-model={bert_copy}")
    assert_usage_error(result, f"*: onnx/../../outside/passwd leads to {secret}, outside the checkpoint folder {bert_copy}; it was not read. *")
    _assert_not_leaked(result)
