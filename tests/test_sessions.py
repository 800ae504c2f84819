"""Fixtures load each checkpoint once per session, and release it before the next one loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

COUNTING_CONFTEST = """
import gc, weakref
from pytest_bertprobe.checkpoint import loading

LOADS = []
LIVE = []
_real_load = loading.load_checkpoint

def counting_load(source, checkpoint_id, **options):
    gc.collect()
    alive = [name for name, ref in LIVE if ref() is not None]
    checkpoint = _real_load(source, checkpoint_id, **options)
    LOADS.append(checkpoint_id)
    LIVE.append((checkpoint_id, weakref.ref(checkpoint.model)))
    print(f"LOAD {checkpoint_id} while alive: {alive}")
    return checkpoint

loading.load_checkpoint = counting_load

def pytest_sessionfinish(session):
    print("LOADS", sorted(LOADS))
"""


def test_each_checkpoint_loads_once_across_modules_and_is_released_before_the_next(
    pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]
) -> None:
    bert, roberta = tiny_checkpoint("bert"), tiny_checkpoint("roberta")
    pytester.makeconftest(COUNTING_CONFTEST)
    for module in ("test_one", "test_two", "test_three"):
        pytester.makepyfile(**{module: "def test_model(bert_model, bert_tokenizer):\n    assert not bert_model.training\n"})
    # A subprocess: in-process, pytester's hook recorder keeps every CallInfo, and with it the models.
    result = pytester.runpytest_subprocess("-s", f"--bert-model={bert}", f"--bert-model={roberta}")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes()["passed"] > 6  # three modules per checkpoint, and the audit
    result.stdout.fnmatch_lines([
        f"*LOAD {bert.name} while alive: [[][]]",
        f"*LOAD {roberta.name} while alive: [[][]]",
        "*LOADS [[]'bert', 'roberta'[]]",
    ])
    output = result.stdout.str() + result.stderr.str()  # -s: nothing captured
    assert "Loading weights" not in output and "Writing model shards" not in output  # transformers' progress bars


def test_summary_shows_one_row_per_model_with_its_verdicts(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]) -> None:
    bert, distilbert = tiny_checkpoint("bert"), tiny_checkpoint("distilbert")
    result = pytester.runpytest(f"--bert-model={bert}", f"--bert-model={distilbert}", "-k", "not sdpa")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "*= bertprobe =*",
        "model*type*pooler*verdict*passed*failed*skipped*your tests*loads*forward passes*worst",
        "bert *bert *standard/tanh *trained *[1-9]* 0 *[0-9]* - *1 *[1-9]* *: |Δ| *(tol *)",
        "distilbert *distilbert *absent *absent *[1-9]* 0 *[1-9]* - *1 *[1-9]*",
        "bertprobe: ran on cpu (--bert-device=auto), float32",
    ])


def test_verbose_summary_lists_every_check(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]) -> None:
    bert = tiny_checkpoint("bert")
    result = pytester.runpytest(f"--bert-model={bert}", "-v", "-k", "pooler")
    result.stdout.fnmatch_lines([
        "bert: pooler_relation: passed: greatest |difference| 0 (tolerance 1e-06) on * batches",
        "bert: cls_differs_from_pooler: passed: greatest |difference| * (more than 0.001 required) on * batches",
    ], consecutive=True)


def test_without_the_audit_the_table_counts_your_tests(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]) -> None:
    pytester.makepyfile(
        "import pytest\n"
        "def test_one(bert_model):\n    pass\n"
        "def test_two(bert_tokenizer):\n    pass\n"
        "def test_three(bert_model):\n    assert bert_model.training\n"
        "def test_four(bert_model):\n    pytest.skip('not today')\n"
        "def test_plain():\n    pass\n"
    )
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-no-audit")
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    # The checks' columns say none ran; yours count the tests that used the checkpoint (not test_plain).
    result.stdout.fnmatch_lines(["bert *bert *BertModel *- *- *- *- *- *2 passed 1 failed 1 skipped *1 *"])


_FROZEN_GARBAGE = """
import gc, weakref
from pytest_bertprobe.checkpoint import frozen_imports

class Model:
    pass

def importing():  # what importing torch and transformers leaves: a caught ImportError, cyclic garbage
    try:
        import a_module_bertprobe_never_finds
    except ImportError as error:
        caught = error  # error -> traceback -> this frame -> error
    return "config"

def load():
    frozen_imports.imported_and_frozen(importing)
    model = Model()  # a later local of the frame that imported
    return weakref.ref(model)

def failing():
    raise ValueError("config.json is broken")

try:
    frozen_imports.imported_and_frozen(failing)
except ValueError as error:
    print("raised", error, "frozen", gc.get_freeze_count() > 0, "collecting", gc.isenabled())
released = load()
gc.collect()
print("frozen", gc.get_freeze_count() > 0, "released", released() is None)
"""


def test_the_imports_heap_is_frozen_without_pinning_a_later_model(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parent.parent)
    # A fresh interpreter: freezing is once per process, and this one froze at its first load.
    run = subprocess.run(
        [sys.executable, "-c", _FROZEN_GARBAGE], cwd=tmp_path, env={**os.environ, "PYTHONPATH": root},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert run.stdout.splitlines() == [
        "raised config.json is broken frozen False collecting True",  # a failed step freezes nothing
        "frozen True released True",
    ]
