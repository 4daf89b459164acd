"""Where the web app's templates and static files are: one setting, `Settings.web_dir`.

By default the copy that ships with twin: a wheel carries the top-level ``web/`` folder inside
the package as ``twin/web/assets`` (setup.py); a source checkout (an editable install) serves
``web/`` itself, so an edited page shows on the next request.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from twin.config import Settings
from twin.errors import ConfigError

PACKAGED_WEB_DIR = Path(__file__).resolve().parent / "assets"
CHECKOUT_WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def web_dir(settings: Settings) -> Path:
    """The folder holding ``templates/`` and ``static/``, checked to hold them.

    Args:
        settings: ``web_dir`` when set, else the copy shipped with twin.
    """
    folder = settings.web_dir or (
        PACKAGED_WEB_DIR if PACKAGED_WEB_DIR.is_dir() else CHECKOUT_WEB_DIR
    )
    missing = [name for name in ("templates", "static") if not (folder / name).is_dir()]
    if missing:
        raise ConfigError(
            f"The web app's files are not in {folder}: no {' or '.join(missing)} folder there.",
            hint="Unset TWIN_WEB_DIR to use the pages shipped with twin, or point it at a copy "
            "of twin's web/ folder; reinstall twin if the shipped copy is missing.",
        )
    return folder


def make_templates(settings: Settings) -> Jinja2Templates:
    """The Jinja2 environment of the pages (the app adds its filters).

    Args:
        settings: where the templates are (`web_dir`).
    """
    return Jinja2Templates(directory=web_dir(settings) / "templates")
