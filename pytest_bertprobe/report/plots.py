"""The HTML report's figures: matplotlib's object API (a bare `Figure`, no pyplot state) written as inline SVG.

Each `Plot` is drawn from a check's recorded metrics (`plot_data`, or the check's own numbers) and carries
its title, axis labels and a one-line caption saying how to read it. matplotlib is imported only here.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_bertprobe.checks.tokenizer.coverage import LANGUAGES

SVG_SALT = "pytest-bertprobe"  # fixed ids in the SVG: the same run draws the same bytes
_FLOOR = 1e-12  # where a log axis puts an exact zero
_OK, _BAD, _LINE = "#3b7dd8", "#d83b3b", "#444444"


@dataclass(frozen=True)
class Plot:
    """One figure: what it shows, how to read it, and the SVG."""

    key: str
    title: str
    caption: str
    svg: str


def figures_for(check: str, metrics: dict[str, Any]) -> list[Plot]:
    """The figures a check's metrics can draw: its recorded plot data, and [UNK] rates."""
    plot = metrics.get("plot") or {}
    drawn: list[Plot | None] = []
    if plot.get("kind") in _DRAWERS:
        drawn.append(_DRAWERS[plot["kind"]](check, plot))
    if check == "token_coverage" and metrics.get("scripts"):
        drawn.append(unk_rates(metrics))
    if check == "weights_trained" and metrics.get("modules"):
        drawn.append(energy_spreads(metrics))
    if check == "vocabulary_rows" and metrics.get("classes"):
        drawn.append(class_cohesion(metrics))
    if check == "embedding_behaviour" and metrics.get("poolings"):
        drawn.append(paraphrase_margins(metrics))
    if check == "masked_lm_behaviour" and metrics.get("vocabulary"):
        drawn.append(pseudo_perplexities(metrics))
    return [figure for figure in drawn if figure is not None]


def pooler_histogram(check: str, data: dict[str, Any]) -> Plot:
    """Pooler pre-activations, with the tanh saturation band marked."""
    low, high = data["range"]
    counts = data["counts"]
    width = (high - low) / len(counts)
    threshold = data.get("threshold", 2.0)

    def draw(axes: Any) -> None:
        lefts = [low + index * width for index in range(len(counts))]
        colours = [_BAD if abs(left + width / 2) > threshold else _OK for left in lefts]
        axes.bar(lefts, counts, width=width, align="edge", color=colours)
        for edge in (-threshold, threshold):
            axes.axvline(edge, color=_LINE, linestyle="--", linewidth=1)
        axes.set_xlabel("pooler pre-activation: dense([CLS]) before tanh")
        axes.set_ylabel("count of values")

    share = data.get("saturated", 0.0)
    caption = (
        f"{share:.1%} of {data.get('values', sum(counts))} values lie past |x| > {threshold:g} (red bars, outside the dashed grey "
        "lines: tanh saturated). A healthy pooler spreads around 0; one spike means a collapsed (constant) pooler, mass in red a saturated one."
    )
    return Plot(f"{check}-pooler", "Pooler pre-activations (probe sentences)", caption, _svg(draw))


def cls_pooler_cosine(check: str, data: dict[str, Any]) -> Plot:
    """Per sentence: cosine between [CLS] and pooler_output."""
    series = data["series"]

    def draw(axes: Any) -> None:
        values = [value for _, value in series]
        axes.bar(range(len(values)), values, color=[_BAD if value > 0.999 else _OK for value in values])
        axes.axhline(1.0, color=_LINE, linestyle="--", linewidth=1)
        axes.set_ylim(min(-0.05, min(values, default=0) - 0.05), 1.05)
        _integer_ticks(axes)
        axes.set_xlabel("sentence (index in the table below)")
        axes.set_ylabel("cosine([CLS], pooler_output)")

    caption = (
        "Each bar is one sentence. A bar that reaches the dashed grey line at 1 (drawn red) means pooler_output is the "
        "[CLS] state itself; a trained tanh pooler gives lower, varied cosines (blue): [CLS] and pooler_output are different embeddings."
    )
    return Plot(f"{check}-cosine", "[CLS] vs pooler_output, per sentence", caption, _svg(draw))


def padding_error(check: str, data: dict[str, Any]) -> Plot:
    """Greatest |alone − padded row| against the sentence's length."""
    points = sorted(data["series"])
    atol = float(data.get("atol", 0.0))

    def draw(axes: Any) -> None:
        lengths = [length for length, _ in points]
        errors = [max(error, _FLOOR) for _, error in points]
        axes.scatter(lengths, errors, color=[_BAD if error > atol else _OK for error in errors], zorder=3)
        axes.axhline(max(atol, _FLOOR), color=_LINE, linestyle="--", linewidth=1, label=f"tolerance {atol:g}")
        axes.set_yscale("log")
        _integer_ticks(axes)
        axes.set_xlabel("sentence length (tokens, before padding)")
        axes.set_ylabel("greatest |alone - padded row|")
        _legend(axes)

    caption = (
        f"Each dot is one sentence of a generated batch, compared alone and padded into the batch. Red dots, above the dashed "
        f"grey line (tolerance {atol:g}), mean padding leaks into real tokens; exact zeros sit at {_FLOOR:g}."
    )
    return Plot(f"{check}-padding", "Padding-invariance error against sequence length", caption, _svg(draw))


def layer_differences(check: str, data: dict[str, Any]) -> Plot:
    """Greatest difference per layer (or output), the tolerance line and the first diverging layer."""
    series = data["series"]
    atol = float(data.get("atol", 0.0))
    diverging = [name for name, _ in series if name in set(data.get("diverging", ()))]
    first = diverging[0] if diverging else None

    def draw(axes: Any) -> None:
        names = [str(name) for name, _ in series]
        values = [max(float(value), _FLOOR) for _, value in series]
        axes.plot(range(len(values)), values, marker="o", color=_OK, zorder=3)
        axes.axhline(max(atol, _FLOOR), color=_LINE, linestyle="--", linewidth=1, label=f"tolerance {atol:g}")
        if first is not None:
            index = names.index(first)
            axes.axvline(index, color=_BAD, linewidth=1.5, label=f"first diverging: {first}")
            axes.scatter([index], [values[index]], color=_BAD, s=60, zorder=4)
        axes.set_yscale("log")
        axes.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        axes.set_xlabel("output, in data-flow order" if data.get("against") != "the golden snapshot" else "embedding")
        axes.set_ylabel(f"greatest |difference| to {data.get('against', 'the reference')}")
        _legend(axes)

    against = data.get("against", "the reference")
    caption = f"Greatest difference to {against} per output (blue), over every sentence tried; the dashed grey line is the tolerance ({atol:g}). " + (
        f"First diverging: {first}. Everything left of the red line agrees, so the fault is in that layer."
        if first
        else "No output diverges: a curve rising towards the line shows where precision is lost."
    )
    return Plot(f"{check}-layers", f"Per-layer difference to {against}", caption, _svg(draw))


def unk_rates(metrics: dict[str, Any]) -> Plot:
    """[UNK] rate per script, the `--bert-languages` threshold drawn, declared scripts in colour."""
    scripts = metrics["scripts"]
    threshold = float(metrics.get("threshold", 0.0))
    declared = {LANGUAGES[code] for code in metrics.get("declared", ()) if code in LANGUAGES}

    def draw(axes: Any) -> None:
        names = list(scripts)
        rates = [100 * scripts[name]["rate"] for name in names]
        colours = [_BAD if name in declared and rate > 100 * threshold else (_OK if name in declared else "#9aa7b8") for name, rate in zip(names, rates)]
        axes.bar(range(len(names)), rates, color=colours)
        axes.axhline(100 * threshold, color=_LINE, linestyle="--", linewidth=1, label=f"--bert-languages threshold {threshold:.0%}")
        axes.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        axes.set_ylim(0, 105)
        axes.set_xlabel("script of the probe characters")
        axes.set_ylabel("characters lost to [UNK] (%)")
        _legend(axes)

    said = ", ".join(sorted(declared)) or "none declared (grey: reported, not enforced)"
    caption = (
        f"Share of each script's characters the tokenizer maps to [UNK]. Declared scripts: {said}; a declared bar above the dashed "
        "grey line fails (red)."
    )
    return Plot("token_coverage-unk", "[UNK] rate by script", caption, _svg(draw))


def _integer_ticks(axes: Any) -> None:
    """Whole numbers on the x axis: token counts and sentence indices have no halves."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def energy_spreads(metrics: dict[str, Any]) -> Plot | None:
    """Each weight matrix's energy spread in model order, log scale, the random band and the threshold drawn."""
    points = [(name, signs["matrix"]["spread"], signs["looks_untrained"]) for name, signs in metrics["modules"].items() if signs.get("matrix")]
    if not points:
        return None
    threshold = float(metrics.get("thresholds", {}).get("spread", 2.0))

    def draw(axes: Any) -> None:
        axes.scatter(range(len(points)), [max(value, _FLOOR) for _, value, _ in points],
                     color=[_BAD if untrained else _OK for _, _, untrained in points], zorder=3, s=14)  # fmt: skip
        axes.axhline(threshold, color=_LINE, linestyle="--", linewidth=1, label=f"threshold {threshold:g}× (random below)")
        axes.axhline(1.0, color=_LINE, linestyle=":", linewidth=1, label="independent entries (1×)")
        axes.set_yscale("log")
        axes.set_xlabel("weight matrix, in the model's order (embeddings, then each layer)")
        axes.set_ylabel("row/column energy spread (×)")
        _legend(axes)

    untrained = [name for name, _, flagged in points if flagged]
    caption = (
        "Each dot is one Linear or Embedding matrix (both sides 64 or more): how unevenly its rows and columns carry weight, "
        "against a matrix of independent entries (1×). Training spreads it (MiniLM and MPNet: 5× and up); a random draw by any "
        f"scheme, or shuffled entries, stays near 1×. Red: looks random ({len(untrained)} of {len(points)})."
    )
    return Plot("weights_trained-spread", "Weight matrices: energy spread against a random draw", caption, _svg(draw))


def class_cohesion(metrics: dict[str, Any]) -> Plot:
    """Per word class: how close its tokens' rows lie (mean cosine), against random tokens' 99th percentile."""
    classes = metrics["classes"]
    threshold = float(metrics.get("threshold", 0.15))

    def draw(axes: Any) -> None:
        names = list(classes)
        share = [len(found["out_of_place"]) / len(found["ids"]) for found in classes.values()]
        axes.bar(range(len(names)), [found["cohesion"] for found in classes.values()], color=[_BAD if value >= threshold else _OK for value in share])
        axes.scatter(range(len(names)), [found["random_bound"] for found in classes.values()], color=_LINE, marker="_", s=400, zorder=3,
                     label="random tokens, 99th percentile")  # fmt: skip
        axes.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        axes.set_xlabel("word class (single tokens of this vocabulary)")
        axes.set_ylabel("mean cosine between its tokens' rows")
        _legend(axes)

    caption = (
        f"Bars: how close the rows of a class's tokens lie (centred cosine); dashes: how close random tokens' rows lie to the class. "
        f"A trained vocabulary keeps each class well above its dash; renumbered ids put tokens on other tokens' rows (red: "
        f"{threshold:.0%} or more of a class's tokens out of place)."
    )
    return Plot("vocabulary_rows-classes", "Word classes: rows of related tokens lie together", caption, _svg(draw))


def paraphrase_margins(metrics: dict[str, Any]) -> Plot:
    """Per read language, each pooling's mean margin cos(anchor, paraphrase) - cos(anchor, distractor); the threshold drawn."""
    read = {language: data for language, data in metrics["languages"].items() if data.get("read")}
    poolings = list(metrics["poolings"])
    declared = metrics.get("embedding")
    threshold = float(metrics.get("min_margin", 0.0))

    def draw(axes: Any) -> None:
        width = 0.8 / max(len(poolings), 1)
        others = iter(("#f0a35e", "#7fbf7b", "#b39ddb", "#9aa7b8"))
        for offset, pooling in enumerate(poolings):
            values = [data["margin"].get(pooling, 0.0) for data in read.values()]
            xs = [index + (offset - (len(poolings) - 1) / 2) * width for index in range(len(read))]
            axes.bar(xs, values, width=width, label=pooling + (" (declared)" if pooling == declared else ""),
                     color=_OK if pooling == declared else next(others))  # fmt: skip
        axes.axhline(threshold, color=_LINE, linestyle="--", linewidth=1, label=f"least margin {threshold:g}")
        axes.axhline(0.0, color="#999999", linewidth=0.8)
        axes.set_xticks(range(len(read)), list(read))
        axes.set_xlabel("probe language (read by the tokenizer)")
        axes.set_ylabel("cos(anchor, paraphrase) - cos(anchor, distractor)")
        _legend(axes)

    skipped = ", ".join(f"{language}: {data['reason']}" for language, data in metrics["languages"].items() if not data.get("read"))
    caption = (
        f"Mean margin per language and pooling of the same hidden states; the declared {declared} embedding in blue must reach "
        f"the dashed line in some language, and no other pooling may score {metrics.get('pooling_ratio', 1.5):g} times as much. "
        "At or below 0 the embedding matches words, not meaning." + (f" Not read: {skipped}." if skipped else "")
    )
    return Plot("embedding_behaviour-margins", "Paraphrase vs look-alike distractor, per language", caption, _svg(draw))


def pseudo_perplexities(metrics: dict[str, Any]) -> Plot:
    """Per read language, the masked-LM pseudo-perplexity on a log axis, against the threshold and a uniform guess."""
    read = {language: data for language, data in metrics["languages"].items() if "pseudo_perplexity" in data}
    ceiling, vocabulary = float(metrics["max_pseudo_perplexity"]), int(metrics["vocabulary"])

    def draw(axes: Any) -> None:
        values = [max(float(data["pseudo_perplexity"]), 1.0) for data in read.values()]
        axes.bar(range(len(values)), values, color=[_BAD if value > ceiling else _OK for value in values])
        axes.axhline(ceiling, color=_LINE, linestyle="--", linewidth=1, label=f"most allowed {ceiling:.4g}")
        axes.axhline(vocabulary, color=_BAD, linestyle=":", linewidth=1, label=f"uniform guess {vocabulary}")
        axes.set_yscale("log")
        axes.set_ylim(1, max([vocabulary, *values]) * 2)  # from a perfect guess (1) up: bars and lines in scale
        axes.set_xticks(range(len(read)), list(read))
        axes.set_xlabel("probe language (read by the tokenizer)")
        axes.set_ylabel("pseudo-perplexity (log)")
        _legend(axes)

    caption = (
        "Each token of the probe sentences masked alone: exp of the mean negative log-likelihood of the true token. "
        f"A uniform guess scores the vocabulary size ({vocabulary}), bert-base about 4 on clean English; the best language "
        "must lie under the dashed line."
    )
    return Plot("masked_lm_behaviour-pppl", "Masked-token recovery (pseudo-perplexity), per language", caption, _svg(draw))


def _legend(axes: Any) -> None:
    """Above the axes, where it hides no bar or point."""
    axes.figure.legend(loc="outside upper right", fontsize=8, frameon=False, ncols=2)


_DRAWERS: dict[str, Callable[[str, dict[str, Any]], Plot]] = {
    "pooler_histogram": pooler_histogram,
    "cls_pooler_cosine": cls_pooler_cosine,
    "padding_error": padding_error,
    "layer_differences": layer_differences,
}


def _svg(draw: Callable[[Any], None]) -> str:
    """Draw on a fresh figure (no pyplot) and return it as an inline `<svg>` element."""
    import matplotlib
    from matplotlib.figure import Figure

    # Text stays text (the browser's sans-serif draws it): a smaller page, searchable labels.
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "none", "font.size": 9}):
        figure = Figure(figsize=(6.4, 3.3), layout="constrained")
        draw(figure.add_subplot())
        buffer = io.StringIO()
        # No metadata block: its RDF names web addresses, and the date would make two runs' pages differ.
        figure.savefig(buffer, format="svg", metadata={key: None for key in ("Creator", "Date", "Format", "Type")})
    text = buffer.getvalue()
    return text[text.index("<svg"):]
