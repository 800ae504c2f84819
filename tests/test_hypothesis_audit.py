"""The Hypothesis-driven audit: shrunk failures, users' own @given tests, deterministic and overridable runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import find

from pytest_bertprobe import strategies
from pytest_bertprobe.audit.harness import EXPLICIT_BATCHES, KERNEL_BATCHES
from pytest_bertprobe.testing import MASK_IGNORING_ARCHITECTURES
from tests.helpers import assert_one_failure

Factory = Callable[..., Path]
PADDING_TEST = "test_each_sentence_alone_matches_its_padded_row"


def _report(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("arch", MASK_IGNORING_ARCHITECTURES)
def test_models_ignoring_the_attention_mask_fail_padding_with_a_shrunk_batch(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, arch: str
) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint(arch)}", "-k", PADDING_TEST, "--bert-report-json=report.json")
    assert_one_failure(result, [
        "*each sentence alone == its row of the padded batch*: tensors are not close!",
        "*Greatest absolute difference: * at index * (sentence *) (up to 0.0001 allowed)",
        "*Failing batch (2 sentences): [[]'', '*'[]]",
    ])
    (check,) = _report(pytester)["checks"]
    # Shrunk: two sentences (padding needs a shorter one beside a longer one), the shorter one empty.
    assert len(check["metrics"]["failing_batch"]) == 2 and check["metrics"]["failing_batch"][0] == ""
    assert check["metrics"]["examples"] > 1


def test_healthy_control_passes_the_same_check(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-k", PADDING_TEST)
    result.assert_outcomes(passed=1)


def test_the_audit_is_deterministic(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    yoso = tiny_checkpoint("yoso")
    batches = []
    for _ in range(2):
        pytester.runpytest(f"--bert-model={yoso}", "-k", PADDING_TEST, "--bert-report-json=report.json")
        batches.append(_report(pytester)["checks"][0]["metrics"]["failing_batch"])
    assert batches[0] == batches[1]


def test_examples_and_forward_passes_are_reported(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-v", "--bert-report-json=report.json")
    assert result.ret == pytest.ExitCode.OK
    report = _report(pytester)
    examples = {check["check"]: check["metrics"].get("examples") for check in report["checks"]}
    # Each probe sentence alone, then ten generated; padding_invariance has no explicit examples (alone, a sentence has no padding).
    assert examples["pooler_relation"] == len(EXPLICIT_BATCHES) + 10 and examples["padding_invariance"] == 10
    assert examples["eager_matches_sdpa"] == len(KERNEL_BATCHES) + 10  # kernels differ by shape: the shortest and longest input
    (model,) = report["models"]
    assert 0 < model["forward_passes"] < 200
    result.stdout.fnmatch_lines(["bert*bert*standard/tanh*trained*1 *[0-9]*"])


def test_user_hypothesis_profile_replaces_the_audit_profile(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    pytester.makeconftest(
        "from hypothesis import settings\nsettings.register_profile('tiny', max_examples=2, database=None, deadline=None)\n"
    )
    pytester.runpytest(
        f"--bert-model={tiny_checkpoint('bert')}", "--hypothesis-profile=tiny", "-k", "pooler_is_dense",
        "--bert-report-json=report.json",
    )  # fmt: skip
    (check,) = _report(pytester)["checks"]
    assert check["metrics"]["examples"] == len(EXPLICIT_BATCHES) + 2  # explicit examples always run, then two generated


USER_TESTS = """
from hypothesis import given, settings
from pytest_bertprobe import assert_pooler_is_dense_tanh_of_cls
from pytest_bertprobe.strategies import sentences

@settings(max_examples=5, deadline=None)
@given(text=sentences(min_fragments=1))
def test_my_pooler(bert_model, bert_tokenizer, bert_anatomy, text):
    if bert_anatomy.checkable:
        assert_pooler_is_dense_tanh_of_cls(bert_model, bert_tokenizer([text], return_tensors="pt"), sentences=[text])
"""


def test_users_given_tests_run_against_two_models_next_to_the_audit(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    pytester.makepyfile(test_mine=USER_TESTS)
    bert, distilbert = tiny_checkpoint("bert"), tiny_checkpoint("distilbert")
    result = pytester.runpytest(f"--bert-model={bert}", f"--bert-model={distilbert}", "-v")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_mine.py::test_my_pooler?bert? PASSED*", "*test_mine.py::test_my_pooler?distilbert? PASSED*"], consecutive=False)
    result.stdout.fnmatch_lines(["*bertprobe_audit_pooler.py::test_pooler_is_dense_tanh_of_cls?bert? PASSED*"])


@pytest.mark.parametrize(
    ("arguments", "runs_mine", "runs_audit"),
    [((), True, True), (("--bert-audit-only",), False, True), (("--bert-no-audit",), True, False),
     (("-m", "not bertprobe_audit"), True, False)],
)  # fmt: skip
def test_choosing_between_own_tests_and_the_audit(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, arguments: tuple[str, ...], runs_mine: bool, runs_audit: bool
) -> None:
    pytester.makepyfile(test_mine="def test_mine(bert_model):\n    pass\n")
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-v", "-k", "mine or pooler_is_dense", *arguments)
    assert ("test_mine.py::test_mine[bert] PASSED" in result.stdout.str()) is runs_mine
    assert ("bertprobe_audit_pooler.py::test_pooler_is_dense_tanh_of_cls[bert] PASSED" in result.stdout.str()) is runs_audit


def test_audit_only_needs_a_model(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--bert-audit-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --bert-audit-only needs a checkpoint: pass --bert-model=PATH_OR_HUB_ID"])


@pytest.mark.parametrize(
    ("strategy", "condition", "minimal"),
    [
        (strategies.sentences(), lambda text: "😀" in text, "😀"),
        (strategies.sentences(), lambda text: any("\u4e00" <= ch <= "\u9fff" for ch in text), "开心"),
        (strategies.batches(), lambda batch: len(batch) >= 2, ["", ""]),
        (strategies.sentence_pairs(), lambda pair: True, ("a", "a")),
    ],
)
def test_strategies_shrink_to_the_minimal_sentence(strategy: object, condition: Callable[..., bool], minimal: object) -> None:
    assert find(strategy, condition) == minimal  # type: ignore[arg-type]


def test_the_strategies_module_offers_its_strategies_not_its_imports() -> None:
    offered = dir(strategies)
    assert offered == sorted(strategies.__all__)
    assert not {"st", "dataclass", "weakref", "Union", "Sequence", "annotations"} & set(offered)
    assert {"sentences", "batches", "sentence_pairs", "vocabulary_sentences", "overlong_sentences"} <= set(offered)
    assert all(callable(getattr(strategies, name)) or name.isupper() or name == "Sentence" for name in offered)


def test_vocabulary_picks_use_the_tokenizers_own_pieces(tiny_checkpoint: Factory) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint("bert"))
    text = strategies.VocabularyPick((0, 1, 2)).text(tokenizer)
    assert text and "[UNK]" not in tokenizer.tokenize(text) and "[CLS]" not in text


_DRAW = """
import sys
if sys.argv[1:] == ["with"]:
    import many_constants  # a local module full of integers Hypothesis would mix into its draws
from pytest_bertprobe.audit.harness import _first_batches
print(repr(_first_batches(10)))
"""


def test_the_audit_batches_do_not_depend_on_the_modules_loaded(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "many_constants.py").write_text(f"CONSTANTS = {list(range(101, 69999, 997))}\n", encoding="utf-8")
    (tmp_path / "draw.py").write_text(_DRAW, encoding="utf-8")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, str(tmp_path)])}

    def draw(*args: str) -> str:
        run = subprocess.run([sys.executable, "draw.py", *args], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
        return run.stdout

    assert draw("with") == draw()


_RECORDING = """
import json, os
from pytest_bertprobe.audit.harness import EXPLICIT_BATCHES, given_batches

SEEN = []

@given_batches
def test_records(request, batch):
    SEEN.append(repr(batch))
    if os.environ.get("FAIL_ONCE") and len(SEEN) == len(EXPLICIT_BATCHES) + 1:
        raise AssertionError("the first generated batch fails, once")

def teardown_module():
    with open(os.environ["SEEN_FILE"], "w", encoding="utf-8") as file:
        json.dump(SEEN, file)
"""


def _recorded_run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[str]]:
    seen = pytester.path / "seen.json"
    seen.unlink(missing_ok=True)
    pytester.makepyfile(test_recording=_RECORDING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    return result, json.loads(seen.read_text(encoding="utf-8"))


def test_a_passing_check_replays_the_batches_hypothesis_generates(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEN_FILE", str(pytester.path / "seen.json"))
    plain, replayed = _recorded_run(pytester)
    engine, generated = _recorded_run(pytester, "--hypothesis-show-statistics")  # statistics need Hypothesis' own run
    plain.assert_outcomes(passed=1)
    engine.assert_outcomes(passed=1)
    engine.stdout.fnmatch_lines(["*Hypothesis Statistics*"])
    assert len(EXPLICIT_BATCHES) + 10 == len(replayed)
    assert replayed == generated


def test_a_failure_only_the_plain_loop_saw_is_reported_as_not_deterministic(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEN_FILE", str(pytester.path / "seen.json"))
    monkeypatch.setenv("FAIL_ONCE", "1")
    result, seen = _recorded_run(pytester)
    assert_one_failure(result, ["*the first generated batch fails, once*"])
    if sys.version_info >= (3, 11):  # exceptions take notes from 3.11
        result.stdout.fnmatch_lines(["*Hypothesis' own run of these batches passed*"])
    # The plain loop stopped at its failure; Hypothesis then ran the explicit batches' followers, all ten.
    assert len(seen) == len(EXPLICIT_BATCHES) + 1 + 10


def test_a_default_profile_without_generation_generates_nothing_in_either_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The audit's profile is registered on top of the default one a conftest loads: no generate phase, no batches.
    pytester.makeconftest(
        "from hypothesis import Phase, settings\n"
        "settings.register_profile('explicit-only', phases=[Phase.explicit])\nsettings.load_profile('explicit-only')\n"
    )
    monkeypatch.setenv("SEEN_FILE", str(pytester.path / "seen.json"))
    plain, replayed = _recorded_run(pytester)
    engine, generated = _recorded_run(pytester, "--hypothesis-show-statistics")
    assert plain.parseoutcomes() == engine.parseoutcomes()
    assert replayed == generated == [repr(list(batch)) for batch in EXPLICIT_BATCHES]


def test_a_failing_check_reports_the_same_batch_and_examples_as_hypothesis_alone(
    pytester: pytest.Pytester, tiny_checkpoint: Factory
) -> None:
    yoso = tiny_checkpoint("yoso")
    reports = []
    for extra in ((), ("--hypothesis-show-statistics",)):
        result = pytester.runpytest(f"--bert-model={yoso}", "-k", PADDING_TEST, "--bert-report-json=report.json", *extra)
        result.assert_outcomes(failed=1)
        (check,) = _report(pytester)["checks"]
        reports.append((check["metrics"]["failing_batch"], check["metrics"]["examples"]))
    assert reports[0] == reports[1]
