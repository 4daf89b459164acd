"""Chat: talk to the twin (a base model with a run's adapter), replies streamed token by token."""

from twin.chat.generate import Twin
from twin.chat.load import load_twin

__all__ = ["Twin", "load_twin"]
