"""The reply sampling defaults: the terminal chat, the web chat, the API and the exported
model's generation config all start from these.

A module of their own, without torch, so that ``twin --help`` can show them without loading a
model's libraries.
"""

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K: int | None = 50
DEFAULT_TOP_P = 0.9
DEFAULT_MAX_NEW_TOKENS = 128
