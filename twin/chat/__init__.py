"""Chat: talk to the twin (a base model with a run's adapter), replies streamed token by token."""

from twin.chat.generate import Twin, load_twin, resolve_run_dir

__all__ = ["Twin", "load_twin", "resolve_run_dir"]
