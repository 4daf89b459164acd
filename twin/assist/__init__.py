"""Assist: the twin drafts replies in my Telegram chats (a feature above the chat stage).

`twin.assist.drafts` listens and writes drafts, `twin.assist.rules` holds its pure rules (when
to draft, the context the model sees), `twin.assist.job` runs the listener as a job.
"""
