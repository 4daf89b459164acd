"""The error hierarchy: one base class, one subclass per stage.

Every error carries a message that names the problem and, where there is one, the fix. The CLI
prints ``str(error)``; the web app renders it on a page. Nothing below the edges catches these.
"""

from __future__ import annotations


class TwinError(Exception):
    """Base class of every error twin raises on purpose.

    Args:
        message: what went wrong, in words a user understands.
        hint: what to do about it (a command, a setting), if anything.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  → {self.hint}" if self.hint else self.message


class ConfigError(TwinError):
    """A setting is missing or invalid."""


class StoreError(TwinError):
    """The database cannot be opened, migrated or written."""


class TelegramError(TwinError):
    """Login or harvest through the Telegram API failed.

    Args:
        message: what went wrong.
        hint: what to do about it.
        retry_after: seconds Telegram asks us to wait (FLOOD_WAIT), if any.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class TelegramUnreachable(TelegramError):
    """No answer from Telegram, or an answer that is not Telegram's (timeout, DNS failure, a
    captive portal or proxy in the way)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Telegram could not be reached ({detail}).",
            hint="Check your connection (a Wi-Fi login page, a proxy or a firewall can be in "
            "the way) and try again; or import a Telegram Desktop export instead.",
        )
        self.detail = detail


class ImportFailed(TwinError):
    """A Telegram Desktop export could not be imported."""


class PrepareError(TwinError):
    """The dataset could not be built."""


class RunError(TwinError):
    """A training run asked for is not there, not finished, or its record cannot be read."""


class TrainError(TwinError):
    """Training could not start, run or resume."""


class ChatError(TwinError):
    """The twin could not be loaded or could not answer."""


class ExportError(TwinError):
    """Exporting a trained twin for other tools (Hugging Face, GGUF) failed."""
