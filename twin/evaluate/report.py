"""What the fidelity report holds, and the reading of it that needs no model: the stored
report (``run.json`` → ``fidelity``), the game's figure.

Apart from `twin.evaluate.fidelity` (torch) and `twin.evaluate.discriminator` (scikit-learn),
so that the web pages and the game show a report without loading those libraries.
"""

from __future__ import annotations

from pydantic import BaseModel

from twin.chat.defaults import Sampling
from twin.evaluate.style import StyleComparison


class Discrimination(BaseModel):
    """How well my replies can be told from others' (cross-validated)."""

    per_class: int
    """Replies on each side."""
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    auc: float
    auc_low: float
    auc_high: float


class SideBySide(BaseModel):
    """One held-out moment of a conversation and three replies to it."""

    context: str
    """The conversation so far, tagged (a sample's ``input``)."""
    real: str
    """What I actually wrote."""
    twin: str
    base: str


class HumanFigure(BaseModel):
    """The "Which one is me?" game's score: people's judgement."""

    rounds: int
    fooled: int
    """Rounds in which the player took the twin's reply for mine."""

    @property
    def fooled_rate(self) -> float | None:
        """0.5: people cannot tell the twin from me."""
        return self.fooled / self.rounds if self.rounds else None


class FidelityReport(BaseModel):
    """How close the twin's replies are to mine, compared with the base model's."""

    run_id: str
    val_samples: int
    """Validation samples scored."""
    scored_tokens: int
    """Reply tokens scored (prompts are masked out)."""
    base_perplexity: float
    twin_perplexity: float
    samples: list[SideBySide]
    seed: int
    sampling: Sampling | None = None
    """How the replies were drawn (None: a report from before this was recorded)."""
    dataset_changed: bool
    """The dataset was rebuilt after training: the split may no longer be held out."""
    seconds: float
    replies: int = 0
    """Held-out contexts the twin and the base model replied to."""
    style: StyleComparison | None = None
    twin_vs_me: Discrimination | None = None
    """Telling my replies from the twin's (None: fewer replies than the test needs)."""
    base_vs_me: Discrimination | None = None
    human: HumanFigure | None = None

    @property
    def improvement(self) -> float:
        """Base perplexity divided by the twin's (above 1: the twin is closer to me)."""
        return self.base_perplexity / self.twin_perplexity


STYLE_RATIO_RANGE = (0.75, 1.25)
"""A style ratio twin/me inside this range counts as "like me"."""


def style_ratios_inside(report: FidelityReport) -> tuple[int, int]:
    """(style figures whose twin/me ratio is inside `STYLE_RATIO_RANGE`, figures with a ratio)."""
    if report.style is None:
        return 0, 0
    low, high = STYLE_RATIO_RANGE
    ratios = [r.twin_ratio for r in report.style.rows if r.twin_ratio is not None]
    return sum(low <= r <= high for r in ratios), len(ratios)
