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
        assert problems == []
