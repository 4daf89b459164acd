"""Reading form fields that the pages share."""

from __future__ import annotations

from twin.errors import TrainError


def optional_steps(value: str, *, name: str, upper: int) -> int | None:
    """A form's step count: blank means the default; anything else a whole number in range."""
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) <= upper:
        raise TrainError(f"{name} must be a whole number from 1 to {upper}, got {value!r}.",
                         hint="Leave it blank for the default.")  # fmt: skip
    return int(value)
