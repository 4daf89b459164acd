"""twin's prompt format for other runtimes: a Jinja chat template (Hugging Face, llama.cpp,
vLLM) and an Ollama ``TEMPLATE``, both derived from `twin.prepare.format` so they cannot drift.

Messages map to turns as in twin's own ``/v1`` API: ``user`` messages are the other person's
turns, ``assistant`` messages are mine, ``system``/``developer``/``tool`` messages are ignored.
The other person's name is the ``name`` of the last user message that has one, else the
template's default; my name is the template variable ``me`` (``apply_chat_template(…, me=…)``),
else the default baked in at export. The rendered prompt always ends where my reply begins.
"""

from __future__ import annotations

import json

from twin.prepare.format import (
    TAG_SEPARATOR,
    TURN_SEPARATOR,
    clean_name,
    render_instruction,
    render_prompt,
    stop_sequences,
)

# Placeholders rendered through twin's own functions, then replaced by template expressions.
_ME, _PEER, _INPUT = "\x01ME\x01", "\x01PEER\x01", "\x01INPUT\x01"


def _jinja_literal(text: str) -> str:
    return "{{ " + json.dumps(text) + " }}" if text else ""


def _prompt_skeleton(*, with_input: bool) -> list[str]:
    """twin's prompt split into literal text and placeholders, in order."""
    instruction = render_instruction(me=_ME, peer=_PEER)
    prompt = render_prompt(instruction=instruction, input=_INPUT if with_input else "")
    parts: list[str] = [prompt]
    for marker in (_ME, _PEER, _INPUT):
        split: list[str] = []
        for part in parts:
            if part in (_ME, _PEER, _INPUT):
                split.append(part)
                continue
            pieces = part.split(marker)
            for index, piece in enumerate(pieces):
                if index:
                    split.append(marker)
                split.append(piece)
        parts = split
    return [p for p in parts if p]


def _render_skeleton(parts: list[str], values: dict[str, str]) -> str:
    return "".join(values.get(p, _jinja_literal(p)) for p in parts)


# `clean_name` in Jinja: no ':' , whitespace collapsed, never empty.
_CLEAN = "(({value}) | replace(':', ' ')).split() | join(' ')"


def chat_template(*, me: str, peer: str) -> str:
    """A Jinja chat template that renders messages exactly as twin prompts its model.

    Args:
        me: my display name, used when the caller passes no ``me`` variable.
        peer: the other person's name when no user message has a ``name``.
    """

    def clean(value: str) -> str:
        return _CLEAN.format(value=value)

    header = (
        "{%- set ns = namespace(peer=" + json.dumps(clean_name(peer)) + ") -%}"
        "{%- set my_name = " + clean("me if me is defined and me else " + json.dumps(me)) + " -%}"
        "{%- set my_name = my_name if my_name else 'Someone' -%}"
        "{%- for m in messages -%}"
        "{%- if m.role == 'user' and m.name is defined and m.name and m.name | trim -%}"
        "{%- set ns.peer = " + clean("m.name") + " -%}"
        "{%- endif -%}{%- endfor -%}"
        "{%- set ns.input = '' -%}{%- set ns.first = true -%}"
        "{%- for m in messages if m.role in ['user', 'assistant'] -%}"
        "{%- if m.content is string -%}{%- set text = m.content -%}"
        "{%- elif m.content -%}{%- set text = m.content | selectattr('type', 'equalto', 'text')"
        " | map(attribute='text') | join('') -%}"
        "{%- else -%}{%- set text = '' -%}{%- endif -%}"
        "{%- set speaker = my_name if m.role == 'assistant' else ns.peer -%}"
        "{%- set ns.input = ns.input + ('' if ns.first else " + json.dumps(TURN_SEPARATOR) + ")"
        " + speaker + " + json.dumps(TAG_SEPARATOR) + " + text -%}"
        "{%- set ns.first = false -%}"
        "{%- endfor -%}"
    )
    values = {_ME: "{{ my_name }}", _PEER: "{{ ns.peer }}", _INPUT: "{{ ns.input }}"}
    with_input = _render_skeleton(_prompt_skeleton(with_input=True), values)
    no_input = _render_skeleton(_prompt_skeleton(with_input=False), values)
    return header + "{%- if ns.first -%}" + no_input + "{%- else -%}" + with_input + "{%- endif -%}"


def ollama_template(*, me: str, peer: str) -> str:
    """An Ollama (Go) ``TEMPLATE``: user turns are the other person's, assistant turns mine.

    Ollama messages carry no names, so both tags are fixed at export.

    Args:
        me: my display name.
        peer: the other person's name.
    """
    tags = {"user": clean_name(peer) + TAG_SEPARATOR, "assistant": clean_name(me) + TAG_SEPARATOR}
    turns = (
        "{{ $first := true }}{{ range .Messages }}"
        '{{ if or (eq .Role "user") (eq .Role "assistant") }}'
        "{{ if not $first }}" + TURN_SEPARATOR + "{{ end }}{{ $first = false }}"
        '{{ if eq .Role "user" }}' + tags["user"] + "{{ else }}" + tags["assistant"]
        + "{{ end }}{{ .Content }}{{ end }}{{ end }}"
    )  # fmt: skip
    values = {_ME: clean_name(me), _PEER: clean_name(peer), _INPUT: turns}
    return "".join(values.get(p, p) for p in _prompt_skeleton(with_input=True))


def default_stop_strings(*, me: str, peer: str) -> list[str]:
    """Strings that end my turn for runtimes that stop on text (the next speaker's tag).

    Args:
        me: my display name.
        peer: the other person's name.
    """
    return stop_sequences(me=me, peer=peer)
