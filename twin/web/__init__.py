"""The browser front door: a vault-locked FastAPI app on 127.0.0.1 (see `twin.web.app`)."""

from twin.web.app import create_app

__all__ = ["create_app"]
