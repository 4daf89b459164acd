"""Evaluation: does the twin write more like me than the base model does? People's verdict
comes from "Which one is me?" (`twin.evaluate.game`)."""
