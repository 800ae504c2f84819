"""Every bidirectional text encoder of transformers 5.x, audited in one session: the right verdict per type.

Healthy types pass (their skips say true things); transformers' own defective types fail by the named checks
and only those, never by an error. Types the installed transformers lacks (4.57 has 41 of the 51) are skipped.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.testing import ALL_ARCHITECTURES, DEFECTIVE_ARCHITECTURES
from tests.helpers import assert_usage_error, edit_json

# transformers' defects (docs/DESIGN.md §5): the checks that fail, once each, and what their failure says.
DEFECTS: dict[str, tuple[set[str], str]] = {
    "yoso": ({"padding_invariance", "masked_content_invariance"}, "*each sentence alone == its row of the padded batch*not close!"),
    "fnet": ({"padding_invariance", "masked_content_invariance"}, "*each sentence alone == its row of the padded batch*not close!"),
    "convbert": ({"padding_invariance", "masked_content_invariance"}, "*outputs with other ids under attention_mask=0*not close!"),
    "nystromformer": ({"padding_invariance", "masked_content_invariance"}, "*outputs with other ids under attention_mask=0*not close!"),
    "sam3_lite_text_text_model": ({"padding_invariance", "masked_content_invariance"}, "*each sentence alone == its row*not close!"),
    "reformer": ({"padding_invariance"}, "*each sentence alone == its row of the padded batch*not close!"),
    "mra": ({"embedding_contract"}, "*cls sentence embeddings of 5 distinct sentences differ: tensors are the same, but should differ!"),
    "funnel": ({"outputs_finite"}, "*FunnelModel raises on the empty sentence (2 tokens with the special ones): RuntimeError: *"),
    "canine": ({"outputs_finite"}, "*CanineModel raises on the empty sentence (2 tokens with the special ones): RuntimeError: *"),
}
# Checks that once skipped on a false reason (a table not found by its name) and must run.
MUST_RUN = {
    "ibert": {"tokenizer_padding_side", "tokenizer_max_length", "tokenizer_ids_in_embeddings", "hidden_states", "masked_content_invariance"},
    "xlm": {"tokenizer_padding_side", "tokenizer_max_length", "tokenizer_token_types"},
    "flaubert": {"tokenizer_padding_side", "tokenizer_max_length", "tokenizer_token_types"},
    "luke": {"hidden_states"},
    "longformer": {"tokenizer_padding_side", "tokenizer_ids_in_embeddings"},
    "xlnet": {"tokenizer_ids_in_embeddings", "tokenizer_padding_side"},  # left padding: it reads its summary token last
    "gte": {"weights_loaded"}, "nomic_bert": {"weights_loaded"}, "jina_embeddings_v3": {"weights_loaded"},
    # Absolute positions without a table fed position ids: an axial table, a parameter sliced or interpolated.
    "reformer": {"tokenizer_padding_side"}, "tipsv2_text_model": {"tokenizer_padding_side"},
    "sam3_lite_text_text_model": {"tokenizer_padding_side"},
}  # fmt: skip


def _installed(arch: str) -> bool:
    from transformers import CONFIG_MAPPING

    return arch in CONFIG_MAPPING


@pytest.fixture(scope="module")
def audited(tiny_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One audit session over a tiny checkpoint of every installed type: the JSON report and the terminal output."""
    folder = tmp_path_factory.mktemp("every-encoder")
    models = [f"--bert-model={tiny_checkpoint(arch)}" for arch in ALL_ARCHITECTURES if _installed(arch)]
    report = folder / "report.json"
    # A subprocess: 51 model modules imported in-process would stay behind in every later test's sys.modules.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *models, f"--bert-report-json={report}", "-rf",
         "--bert-allow-untrained"],  # tiny random checkpoints: untrained by construction
        cwd=folder, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    data = json.loads(report.read_text(encoding="utf-8"))
    checks: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for check in data["checks"]:
        checks[check["model"]].append(check)
    return {"models": {model["id"]: model for model in data["models"]}, "checks": checks, "output": run.stdout, "ret": run.returncode}


def test_the_tables_name_every_type_once() -> None:
    assert len(ALL_ARCHITECTURES) == len(set(ALL_ARCHITECTURES)) == 51
    assert set(DEFECTS) == set(DEFECTIVE_ARCHITECTURES) and set(MUST_RUN) <= set(ALL_ARCHITECTURES)


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_each_type_gets_its_verdict(arch: str, audited: dict[str, Any]) -> None:
    if not _installed(arch):
        import transformers

        pytest.skip(f"transformers {transformers.__version__} has no model_type {arch!r}")
    checks = audited["checks"][arch]
    outcomes = collections.Counter(check["outcome"] for check in checks)
    assert outcomes["error"] == 0, [check for check in checks if check["outcome"] == "error"]
    failed = {check["check"] for check in checks if check["outcome"] == "failed"}
    expected, message = DEFECTS.get(arch, (set(), ""))
    assert failed == expected, audited["output"][-5000:]
    assert audited["models"][arch]["outcome"] == ("failed" if expected else "passed")
    if message:
        lines = [line for line in audited["output"].splitlines() if f"[{arch}]" in line or line.startswith("E ")]
        assert any(fnmatch.fnmatch(line, message) for line in lines), message
    ran = {check["check"] for check in checks if check["outcome"] != "skipped"}
    assert MUST_RUN.get(arch, set()) <= ran, {c["check"]: c.get("metrics") for c in checks if c["check"] in MUST_RUN[arch]}


def test_x_mod_with_several_languages_and_no_default_is_one_line(
    pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    import shutil

    folder = Path(shutil.copytree(tiny_checkpoint("xmod"), tmp_path / "xmod"))
    edit_json(folder / "config.json", languages=["en_XX", "de_DE"])
    assert_usage_error(
        pytester.runpytest(f"--bert-model={folder}"),
        "*: XmodModel has 2 language adapters (en_XX, de_DE) and config.json sets no default_language, "
        "so the audit cannot tell which to run; set \"default_language\" in config.json",
    )
