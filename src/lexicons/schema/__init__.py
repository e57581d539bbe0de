"""Machine-readable descriptions of an application, for its clients and their tools.

``lexicons schema app.py`` writes :func:`asyncapi_document`, an AsyncAPI 3.0 document;
``lexicons types app.py`` writes :func:`typescript_declarations`, the TypeScript types
the JavaScript client checks calls against. Both are read from the app's registries and
annotations through msgspec's JSON Schema (see :mod:`lexicons.schema.contract`).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..settings import Settings
from . import asyncapi, typescript
from .contract import Application, contract_of

__all__ = ["Served", "asyncapi_document", "typescript_declarations"]


class Served(Application, Protocol):
    """An application and its settings (:class:`lexicons.Server` is one)."""

    @property
    def settings(self) -> Settings: ...


def asyncapi_document(
    app: Served, *, title: str = "lexicons application", settings: Settings | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``app`` as a dict (JSON-ready), served where
    ``settings`` (default: the app's) say::

        document = asyncapi_document(app, title="chat")
        assert document["asyncapi"] == "3.0.0"
    """
    settings = settings or app.settings
    return asyncapi.document(
        contract_of(app),
        title=title,
        host=f"{settings.host}:{settings.port}",
        protocol=settings.protocol,
    )


def typescript_declarations(app: Application, *, title: str = "lexicons application") -> str:
    """The TypeScript declarations of ``app``: a type per payload, reply and broadcast
    type, and ``App`` for ``new Client<App>(url)``."""
    return typescript.declarations(contract_of(app), title=title)
