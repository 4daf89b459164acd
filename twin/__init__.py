"""twin: turn your private Telegram chats into a fine-tuned LLM that talks like you."""

__version__ = "0.1.0"
