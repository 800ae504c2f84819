"""Each check's one-line detail, and what the terminal's bertprobe section shows with and without -v."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint.source import Source
from pytest_bertprobe.options import Settings
from pytest_bertprobe.report import terminal
from pytest_bertprobe.report.details import detail, notable
from pytest_bertprobe.session import NO_MODEL_REASON, CheckResult, ProbeSession

# all-MiniLM-L6-v2's own metrics (its JSON report), abridged.
UNTRAINED_POOLER = {
    "verdict": "untrained",
    "evidence": {
        "layers": {"pooler.dense": {"bias_all_zero": True, "weight_std": 0.009098, "weight_std_ratio": 0.4549}},
        "why": "pooler untrained: pooler.dense.bias is zero in every unit; biases start at zero and a layer that never received a gradient keeps it",
    },
}
COVERAGE = {
    "threshold": 0.1,
    "declared": [],
    "scripts": {
        "Han": {"characters": 44, "unknown": 23, "rate": 0.5227},
        "Latin": {"characters": 653, "unknown": 0, "rate": 0.0},
        "Symbol": {"characters": 2, "unknown": 2, "rate": 1.0},  # not a language's script: never listed
        "Thai": {"characters": 43, "unknown": 43, "rate": 1.0},
    },
}


def _check(name: str, metrics: dict[str, Any], outcome: str = "passed") -> CheckResult:
    return CheckResult(f"bertprobe_audit_x.py::test_x[m-{name}]", name, outcome, metrics)


DECLARED = {**COVERAGE, "declared": ["zh"], "scripts": {name: rates for name, rates in COVERAGE["scripts"].items() if name != "Thai"}}


@pytest.mark.parametrize(
    ("check", "finding", "said", "quiet", "quiet_said"),
    [
        pytest.param(
            "pooler_provenance", UNTRAINED_POOLER,
            "verdict untrained (reported, not failed: --bert-embedding=pooler fails it): pooler.dense.bias is zero in every unit; "
            "biases start at zero and a layer that never received a gradient keeps it; weight std 0.0091 (0.45 × initializer_range)",
            {"verdict": "trained", "evidence": {}}, "verdict trained",
            id="the pooler verdict carries its evidence",
        ),
        pytest.param(
            "token_coverage", COVERAGE,
            "[UNK] past 10%, reported, not failed: Thai 100% (43/43), Han 52% (23/44); --bert-languages=th,zh would fail them; "
            "1 script at or under 10% [UNK]",
            DECLARED, "1 script at or under 10% [UNK] (declared: Han)",  # Han fails instead
            id="scripts lost to [UNK] are reported unless declared",
        ),
    ],
)  # fmt: skip
def test_a_green_rows_finding_is_said_and_shown_without_v(
    check: str, finding: dict[str, Any], said: str, quiet: dict[str, Any], quiet_said: str
) -> None:
    assert detail(_check(check, finding)) == said
    assert notable(_check(check, finding))
    assert detail(_check(check, quiet)).startswith(quiet_said)
    assert not notable(_check(check, quiet))


def test_a_failure_a_skip_and_a_report_say_their_own_first_line() -> None:
    assert detail(_check("pooler_relation", {"message": "pooler_output == ...: tensors are not close!\nMismatched"}, "failed")) == (
        "pooler_output == ...: tensors are not close!"
    )
    assert detail(_check("head_relation", {"reason": "checkpoint has no head (saved as BertModel)"}, "skipped")) == (
        "checkpoint has no head (saved as BertModel)"
    )
    reported = {"reported": "pooler provenance is 'untrained'", "allowed_by": "--bert-allow-untrained"}
    assert detail(_check("pooler_provenance", reported)) == "reported, not failed (--bert-allow-untrained): pooler provenance is 'untrained'"


def test_a_check_without_a_line_of_its_own_gets_its_numbers() -> None:
    gap = {"max_abs": 2.98e-06, "atol": 0.0001, "relation": "close", "examples": 10, "forward_passes": 19}
    assert detail(_check("padding_invariance", gap)) == "greatest |difference| 2.98e-06 (tolerance 0.0001) on 10 batches"
    apart = {"max_abs": 5.89, "atol": 0.001, "relation": "apart"}
    assert detail(_check("cls_differs_from_pooler", apart)) == "greatest |difference| 5.89 (more than 0.001 required)"
    # A check added later (no describer), and a known check whose metrics have another shape: never an exception.
    assert detail(_check("a_new_check", {"labels": 3, "names": ["a"], "forward_passes": 0})) == "labels 3"
    assert detail(_check("weights_loaded", {"loaded": 3})) == "loaded 3"


class _Terminal:
    """What `write_summary` needs of pytest's TerminalReporter."""

    def __init__(self, verbosity: int) -> None:
        self.lines: list[str] = []
        self.config = type("Config", (), {"get_verbosity": lambda _self: verbosity})()

    def write_sep(self, sep: str, title: str) -> None:
        self.lines.append(f"{sep * 3} {title} {sep * 3}")

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def _session() -> ProbeSession:
    source = Source("m", Path("/models/m"), None, None)
    session = ProbeSession(Settings(models=("m",), device="auto", dtype="float32", revision=None, audit=True), [source], ["m"])
    record = session.record("m")
    record.device, record.model_type, record.model_class = "cpu", "bert", "BertModel"
    record.checks = [
        _check("pooler_relation", {"max_abs": 0.0, "atol": 1e-06, "relation": "close", "examples": 29}),
        _check("pooler_provenance", UNTRAINED_POOLER),
        _check("token_coverage", COVERAGE),
        _check("embedding_contract", {"reported": "the embedding is constant", "allowed_by": "--bert-allow-untrained"}),
    ]
    record.tests = {"passed": 8}
    session.no_model_skips = 2
    session.written = [("JSON report", "/work/report.json")]
    return session


def test_without_v_the_summary_shows_the_findings_and_with_v_every_check() -> None:
    quiet, verbose = _Terminal(0), _Terminal(1)
    terminal.write_summary(quiet, _session())  # type: ignore[arg-type]
    terminal.write_summary(verbose, _session())  # type: ignore[arg-type]
    assert quiet.lines[1].split() == [*"model type class pooler verdict head passed failed skipped".split(), "your", "tests", "loads",
                                      "forward", "passes", "worst"]  # fmt: skip
    assert quiet.lines[2].split()[6:11] == ["4", "0", "0", "8", "passed"]
    assert quiet.lines[3:] == [
        "bertprobe: ran on cpu (--bert-device=auto), float32",
        f"m: pooler_provenance: passed: {detail(_check('pooler_provenance', UNTRAINED_POOLER))}",
        f"m: token_coverage: passed: {detail(_check('token_coverage', COVERAGE))}",
        "m: embedding_contract: reported, not failed (--bert-allow-untrained): the embedding is constant",
        "bertprobe: 2 tests skipped: no checkpoint given (pass --bert-model=PATH_OR_HUB_ID or set bert_models in your ini; "
        "--bert-require-model makes this an error)",
        "bertprobe: JSON report written to /work/report.json",
    ]
    assert "m: pooler_relation: passed: greatest |difference| 0 (tolerance 1e-06) on 29 batches" in verbose.lines


def test_the_no_checkpoint_reason_is_what_the_summary_counts() -> None:
    from pytest_bertprobe.report.properties import collect

    session = ProbeSession(Settings(models=(), device="auto", dtype="float32", revision=None, audit=True), [], [])
    for reason in (NO_MODEL_REASON, "no reference to compare with"):
        location = ("test_a.py", 0, "test_a")
        collect(pytest.TestReport("test_a.py::test_a", location, {}, "skipped", ("test_a.py", 3, f"Skipped: {reason}"), "setup"), session)
    assert session.no_model_skips == 1
