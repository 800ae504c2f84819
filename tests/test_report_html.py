"""The HTML report: a healthy checkpoint and a faulty conversion, parsed and rendered in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import assert_usage_error, headless_chromium, plant_copy, run_pytest

pytest.importorskip("matplotlib")

Factory = Callable[..., Path]
LAST_QUERY = "encoder.layer.1.attention.self.query.weight"  # the tiny bert's second (last) layer
PLOTS = ("pooler", "cosine", "unk", "layers", "padding")
PLOT_BLUE, PLOT_RED = (0x3B, 0x7D, 0xD8), (0xD8, 0x3B, 0x3B)  # plots.py's colours


class _Page(HTMLParser):
    """What a reader of the page meets: figures with their SVG text and captions, links and sources, text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, list[str]]] = {}
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value) for src / href
        self.tags: list[str] = []
        self.text: list[str] = []
        self._figure: str | None = None
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href") and value is not None:
                self.references.append((tag, name, value))
        if tag == "figure":
            self._figure = dict(attrs)["id"] or ""
            self.figures[self._figure] = {"svg_text": [], "caption": []}
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._figure is None or not data.strip():
            return
        if "text" in self._in:
            self.figures[self._figure]["svg_text"].append(data.strip())
        elif "figcaption" in self._in:
            self.figures[self._figure]["caption"].append(data.strip())


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint: Factory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The healthy tiny bert (id `bert`, also the reference) and a conversion that transposed its last layer's query weight."""

    def transpose(tensors: dict[str, Any]) -> None:
        tensors[LAST_QUERY] = tensors[LAST_QUERY].T.contiguous()

    healthy = tiny_checkpoint("bert")
    return {"healthy": healthy, "transposed": plant_copy(healthy, tmp_path_factory.mktemp("faulty") / "transposed", weights=transpose)}


def _audit(folder: Path, checkpoints: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    """Audit both checkpoints against the healthy one in a fresh process, writing `report.html` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return run_pytest(
        folder, "-q", f"--bert-model={checkpoints['healthy']}", f"--bert-model={checkpoints['transposed']}",
        f"--bert-reference={checkpoints['healthy']}", "--bert-report-html=out/report.html", "--bert-allow-untrained", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess[str], str]]:
    """The audit serial (with pytest-html's page where it is installed) and under `-n 2`: each run's result and page."""
    html_plugin = ("--html=out/pytest-html.html", "--self-contained-html") if _has("pytest_html") else ()
    found = {}
    for name, extra in {"serial": html_plugin, "xdist": ("-n", "2")}.items():
        folder = tmp_path_factory.mktemp(name)
        result = _audit(folder, checkpoints, *extra)
        # The run's folder (snapshot paths in skip reasons) differs by run: named alike, pages compare.
        found[name] = (result, (folder / "out" / "report.html").read_text(encoding="utf-8").replace(str(folder), "RUN"))
        if html_plugin and name == "serial":
            found["pytest-html"] = (result, (folder / "out" / "pytest-html.html").read_text(encoding="utf-8"))
    return found


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _section(page: str, model: str) -> str:
    """One model's part of the page."""
    start = page.index(f'id="model-{model}"')
    end = page.find('<h2 id="model-', start + 1)
    return page[start : end if end > 0 else page.index("<h2>Environment")]


def test_the_faulty_conversion_fails_by_reference_agreement_alone(runs: dict[str, Any]) -> None:
    result, _ = runs["serial"]
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    failed = re.findall(r"^FAILED (\S+)", result.stdout, flags=re.MULTILINE)
    assert failed == ["bertprobe_audit_reference.py::test_agrees_with_the_reference_layer_by_layer[transposed]"], result.stdout


def test_every_model_has_every_plot_with_axis_labels_and_a_caption(runs: dict[str, Any]) -> None:
    _, page = runs["serial"]
    for model in ("bert", "transposed"):
        figures = _parse(_section(page, model)).figures
        assert sorted(key.rsplit("-", 1)[1] for key in figures) == sorted(PLOTS), figures.keys()
        for key, parts in figures.items():
            labels = " ".join(parts["svg_text"])
            caption = " ".join(parts["caption"])
            assert len(parts["caption"]) == 2 and len(caption) > 60, (key, caption)  # a title, then how to read it
            expected = {
                "pooler": ("pooler pre-activation", "count of values"),
                "cosine": ("sentence (index", "cosine([CLS], pooler_output)"),
                "unk": ("script of the probe characters", "[UNK] (%)", "--bert-languages threshold"),
                "layers": ("output, in data-flow order", "greatest |difference| to the reference", "tolerance 0.0001"),
                "padding": ("sentence length (tokens", "greatest |alone - padded row|", "tolerance 0.0001"),
            }[key.rsplit("-", 1)[1]]
            for label in expected:
                assert label in labels, (key, label, labels)


def test_the_failed_check_and_the_first_diverging_layer_are_named(runs: dict[str, Any]) -> None:
    _, page = runs["serial"]
    faulty, healthy = _section(page, "transposed"), _section(page, "bert")
    assert "<h3>Failed checks</h3>" in faulty and "<h3>Failed checks</h3>" not in healthy
    failed = re.findall(r"<p><b>([\w_]+)</b>", faulty)
    assert failed == ["reference_agreement"]
    message = faulty.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert "first diverging output layer 2 of 2 (hidden_states[2])" in message
    assert f"{LAST_QUERY}: greatest difference" in message and "(it is the reference transposed)" in message
    assert message.count("Hint:") == 1  # the whole message, not its first lines
    layers = _parse(faulty).figures["plot-reference_agreement-layers"]
    assert "first diverging: layer 2" in " ".join(layers["svg_text"])  # the marker's legend
    assert "First diverging: layer 2." in " ".join(layers["caption"])
    healthy_layers = _parse(healthy).figures["plot-reference_agreement-layers"]
    assert "No output diverges" in " ".join(healthy_layers["caption"])
    overview = page.split('<table class="overview">', 1)[1].split("</table>", 1)[0]
    assert '<tr class="verdict-passed"><td><a href="#model-bert">' in overview
    assert '<tr class="verdict-failed"><td><a href="#model-transposed">' in overview
    for cell in ("BertModel", "standard/tanh", "trained", "reference_agreement: |Δ|"):
        assert cell in overview


def test_every_check_row_says_what_was_measured_and_the_options_read_as_written(runs: dict[str, Any]) -> None:
    _, page = runs["serial"]
    for model in ("bert", "transposed"):
        rows = re.findall(r'<tr><td>([\w_]+)</td><td class="(\w+)">\w+</td><td>(.*?)</td></tr>', _section(page, model))
        assert len(rows) > 25 and all(cell for _, _, cell in rows), [check for check, _, cell in rows if not cell]
    options = dict(re.findall(r"<tr><th>(\w+)</th><td>(.*?)</td></tr>", page.split("<h2>Options</h2>", 1)[1]))
    assert options["models"].count(", ") == 1 and options["allow_untrained"] == "on" and options["trust_remote_code"] == "off"
    assert options["reference"] != "None" and options["budget"] == "-" and options["tolerances"] == "-" and options["languages"] == "-"
    assert not [value for value in options.values() if value in ("None", "()", "{}", "True", "False") or value.startswith("(")]


def test_option_values_read_as_a_user_writes_them() -> None:
    from pytest_bertprobe.compare import Tolerance
    from pytest_bertprobe.report.html import option_text

    assert [option_text(value) for value in (None, (), True, False, ("zh", "en"), 60.0, "auto")] == ["-", "-", "on", "off", "zh, en", "60.0", "auto"]
    tolerances = {"padding_invariance": Tolerance(1e-3, 1e-3), "determinism": Tolerance(0.0, 0.0)}
    assert option_text(tolerances) == "padding_invariance = 0.001 0.001; determinism = 0 0"


def test_the_padding_plot_counts_tokens_in_whole_numbers_and_its_caption_names_its_colours() -> None:
    from pytest_bertprobe.report import plots

    plot = plots.padding_error("padding_invariance", {"series": [[2, 1e-7], [3, 3e-7], [4, 2e-4]], "atol": 1e-4})
    labels = _parse(f'<figure id="x">{plot.svg}</figure>').figures["x"]["svg_text"]
    assert {"2", "3", "4"} <= set(labels) and not [label for label in labels if re.fullmatch(r"\d+\.\d+", label)], labels
    assert "Red dots, above the dashed grey line" in plot.caption
    cosine = plots.cls_pooler_cosine("cls_differs_from_pooler", {"series": [["a", 0.2], ["b", 1.0]]})
    assert "dashed grey line at 1 (drawn red)" in cosine.caption  # the line is grey; the bars that reach it are red


def test_the_page_fetches_nothing(runs: dict[str, Any]) -> None:
    _, page = runs["serial"]
    parsed = _parse(page)
    outside = [reference for reference in parsed.references if not reference[2].startswith("#")]
    assert outside == [], outside
    assert "link" not in parsed.tags and "img" not in parsed.tags and "iframe" not in parsed.tags
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.DOTALL)
    assert [attributes for attributes, _ in scripts] == [""], "one inline script (the overview's sorting), nothing loaded"
    assert not re.search(r"fetch|XMLHttpRequest|import|src|href|http|location|cookie|storage", scripts[0][1]), scripts[0][1]
    assert not re.search(r"url\((?!#)|@import", page), "CSS or SVG that loads something"
    assert "<h2>Environment</h2>" in page and "transformers" in page and "<h2>Options</h2>" in page


def test_xdist_writes_the_same_page(runs: dict[str, Any]) -> None:
    (serial_result, serial), (xdist_result, xdist) = runs["serial"], runs["xdist"]
    assert xdist_result.returncode == serial_result.returncode == pytest.ExitCode.TESTS_FAILED, xdist_result.stdout

    def stable(page: str) -> str:
        # Seconds differ by run; the options name the run's folder. Each checkpoint runs in one process, as serially,
        # so even the forward-pass counts agree.
        return re.sub(r"<td>\d+\.\d</td>", "<td>#</td>", page.split("<h2>Options</h2>", 1)[0])

    assert stable(serial) == stable(xdist)


def test_pytest_html_rows_carry_the_plots(runs: dict[str, Any]) -> None:
    if "pytest-html" not in runs:
        pytest.skip("pytest-html is not installed")
    _, page = runs["pytest-html"]
    for key in ("reference_agreement-layers", "pooler_not_degenerate-pooler", "padding_invariance-padding"):
        assert f"plot-{key}" in page, key


def test_headless_chromium_renders_the_page_with_its_plots(runs: dict[str, Any], tmp_path: Path) -> None:
    import numpy as np
    from matplotlib import image

    page = tmp_path / "report.html"
    page.write_text(runs["serial"][1], encoding="utf-8")
    screenshot = tmp_path / "report.png"
    command = [*headless_chromium(tmp_path / "profile"), f"--screenshot={screenshot}", "--window-size=1280,6000", page.as_uri()]
    subprocess.run(command, capture_output=True, timeout=180, check=True)
    pixels = (image.imread(screenshot)[..., :3] * 255).round().astype(np.int16)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    not_white = float((pixels.min(axis=-1) < 240).mean())
    assert len(colours) > 50 and not_white > 0.02, (len(colours), not_white)

    def share(colour: tuple[int, int, int]) -> float:
        return float((np.abs(pixels - np.array(colour)).max(axis=-1) <= 6).mean())

    assert share(PLOT_BLUE) > 1e-3, "no plot drawn: the SVG bars and points are missing"
    assert share(PLOT_RED) > 1e-5, "the first diverging layer's red marker is missing"


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_without_matplotlib_the_option_is_one_usage_line(pytester: pytest.Pytester, tiny_checkpoint: Factory, workers: tuple[str, ...]) -> None:
    pytester.makepyfile(hide_matplotlib="import sys\nsys.modules['matplotlib'] = None\n")
    model = f"--bert-model={tiny_checkpoint('bert')}"
    result = pytester.runpytest_subprocess("-p", "hide_matplotlib", model, "--bert-report-html=report.html", *workers)
    assert_usage_error(result, "--bert-report-html needs matplotlib*pip install 'pytest-bertprobe?html?'")
    assert not (pytester.path / "report.html").exists()


def test_plot_data_merges_over_examples(pytester: pytest.Pytester) -> None:
    from pytest_bertprobe.audit.record import _PLOTS, PLOT_POINTS, record_plot

    item = pytester.getitem("def test_func(): pass")
    record_plot(item, {"kind": "layer_differences", "series": [["embeddings", 0.0], ["layer 1", 2.0]], "diverging": ["layer 1"]})
    record_plot(item, {"kind": "layer_differences", "series": [["layer 1", 1.0], ["layer 2", 3.0]], "diverging": []})
    assert item.stash[_PLOTS] == {
        "kind": "layer_differences", "series": [["embeddings", 0.0], ["layer 1", 2.0], ["layer 2", 3.0]], "diverging": ["layer 1"],
    }  # fmt: skip
    record_plot(item, {"series": [[f"sentence {index}", 0.5] for index in range(2 * PLOT_POINTS)]})
    assert len(item.stash[_PLOTS]["series"]) == PLOT_POINTS


def test_the_page_is_replaced_whole(tmp_path: Path) -> None:
    from pytest_bertprobe.atomic import write_text_atomic as _write_atomic

    target = tmp_path / "reports" / "page.html"
    _write_atomic(target, "first")
    _write_atomic(target, "second")
    assert target.read_text(encoding="utf-8") == "second"
    assert [path.name for path in target.parent.iterdir()] == ["page.html"]  # no temporary file left behind
    assert target.stat().st_mode & 0o044 == 0o044  # readable by a CI artifact's other users


def test_a_regressed_snapshot_is_drawn_per_embedding(checkpoints: dict[str, Path]) -> None:
    from pytest_bertprobe.audit import plot_data
    from pytest_bertprobe.checkpoint import loading
    from pytest_bertprobe.checks import snapshot
    from pytest_bertprobe.report import plots

    def load(path: Path) -> loading.Checkpoint:
        return loading.load_checkpoint(loading.resolve_source(str(path)), path.name, device="cpu", dtype="float32")

    healthy = load(checkpoints["healthy"])
    stored = snapshot.take_snapshot(healthy.model, healthy.tokenizer)
    regressed = load(checkpoints["transposed"])
    data = plot_data.snapshot_differences(regressed.model, regressed.tokenizer, stored)
    assert data is not None and [kind for kind, _ in data["series"]] == ["cls", "pooler", "mean"]
    assert data["diverging"] and data["against"] == "the golden snapshot"
    [figure] = plots.figures_for("golden_snapshot", {"plot": data})
    assert f"First diverging: {data['diverging'][0]}." in figure.caption and "embedding" in figure.svg
