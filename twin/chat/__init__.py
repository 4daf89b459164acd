"""Chat: talk to the twin (a base model with a run's adapter), replies streamed token by token.

`twin.chat.load.load_twin` loads a model, `twin.chat.generate.Twin` replies. The package itself
imports nothing, so that its light modules (`twin.chat.defaults`) do not load torch.
"""
