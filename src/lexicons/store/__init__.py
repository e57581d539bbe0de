"""The built-in store: typed models, in-memory tables with indexes, queries, persistence.

``models`` (schemas and field checks), ``indexes`` (tables and their indexes),
``query`` (filters and plans), ``storage`` (JSON files and the durable SQLite file) and
``database`` (the :class:`Database` that ties them together). The store knows nothing of
connections, channels or the network: the server hands it to handlers as ``db``.
"""

from .database import Database
from .models import Index, Model, Ref
from .query import QueryResult

__all__ = ["Database", "Index", "Model", "QueryResult", "Ref"]
