"""Packaging beyond pyproject.toml: folders outside ``twin/`` that ship inside the package.

The web pages' templates and static files stay in the top-level ``web/`` folder, the database
migrations in ``migrations/`` (their source of truth, where Alembic and the Dockerfile expect
them); a wheel carries them as ``twin/web/assets`` and ``twin/db_migrations``, where
`twin.web.templating` and `twin.db` look first.
"""

from setuptools import find_namespace_packages, find_packages, setup

MAPPED = {"twin.web.assets": "web", "twin.db_migrations": "migrations"}


def _with_subfolders(package: str, folder: str) -> list[str]:
    return [package, *(f"{package}.{sub}" for sub in find_namespace_packages(where=folder))]


setup(
    packages=[
        *find_packages(include=["twin", "twin.*"]),
        *(p for package, folder in MAPPED.items() for p in _with_subfolders(package, folder)),
    ],
    package_dir=MAPPED,
    package_data={
        "twin": ["**/*.json", "**/*.txt"],
        **{
            package: ["*.html", "*.css", "*.js", "*.mako"]
            for mapped, folder in MAPPED.items()
            for package in _with_subfolders(mapped, folder)
        },
    },
)
