"""The loss chart as a person sees it while a run starts: before the first step it says what
will appear, after one step it shows that step (a line needs two), then the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_browser import CHROMIUM, chromium_page

TWIN_JS = Path(__file__).resolve().parents[2] / "web" / "static" / "twin.js"


def test_the_loss_chart_shows_something_from_the_first_step() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    with chromium_page(400) as (page, problems):
        page.set_content('<div><svg data-field="curve" viewBox="0 0 640 240"></svg></div>')
        page.add_script_tag(path=str(TWIN_JS))

        def draw(points: dict[str, list[list[float]]]) -> dict[str, int | str]:
            return page.evaluate(
                """(points) => {
                    const svg = document.querySelector("svg");
                    svg._points = points;
                    drawCurve(svg);
                    return {
                        text: svg.textContent,
                        dots: svg.querySelectorAll("circle.dot-train").length,
                        lines: svg.querySelectorAll("polyline.series-train").length,
                    };
                }""",
                points,
            )

        empty = draw({"train": [], "val": []})
        assert "appears after the first training step" in str(empty["text"])
        one = draw({"train": [[1, 3.5]], "val": []})
        assert (one["dots"], one["lines"]) == (1, 0)
        two = draw({"train": [[1, 3.5], [2, 3.2]], "val": []})
        assert (two["dots"], two["lines"]) == (0, 1)

        # The loss axis has a value at each end, every value its own: a short curve had one
        # label (3.05–3.89: "3.5" alone) or repeated ones (3.69–3.71 printed to 2 decimals).
        for train in ([[1, 3.05], [2, 3.89]], [[1, 3.71], [2, 3.69]], [[1, 3.5]], [[1, 0.2]]):
            labels = page.evaluate(
                """(points) => {
                    const svg = document.querySelector("svg");
                    svg._points = points;
                    drawCurve(svg);
                    return [...svg.querySelectorAll("text.tick[text-anchor=end]")]
                        .map((t) => t.textContent);
                }""",
                {"train": train, "val": []},
            )
            values = [float(label) for label in labels]
            assert len(values) >= 2 and len(set(labels)) == len(labels), (train, labels)
            losses = [loss for _, loss in train]
            assert values[0] <= min(losses) and values[-1] >= max(losses), (train, labels)
        assert problems == []
