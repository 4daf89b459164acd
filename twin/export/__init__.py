"""Export: a trained twin (base + adapter merged) for other tools — Hugging Face transformers /
vLLM (`twin.export.hf`) and llama.cpp / Ollama (`twin.export.gguf_file`); the entry function is
`twin.export.run.export_run` (``twin export``)."""
