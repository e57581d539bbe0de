"""The plain-Python reference of tests/apps/crash_app.py: what every mutation should do.

Tables are dicts of rows (dicts of fields) in creation order. :meth:`Reference.apply`
performs one operation as lexicons' Database documents it and returns the reply the
server should send, or :data:`ERROR` when the server should answer with an error frame
and change nothing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["ANY", "CASCADES", "ERROR", "FIELDS", "MODELS", "REFS", "REQUIRED", "Reference"]

#: The server answers with an error frame (and nothing changes).
ERROR = object()
#: Any reply will do (a summary text).
ANY = object()
#: A field without a default.
REQUIRED = object()

MODELS = ("Author", "Post", "Comment")
#: Each version's fields with their defaults, in declaration order (``pk`` first).
FIELDS: dict[int, dict[str, dict[str, Any]]] = {
    1: {
        "Author": {"name": "", "age": 0},
        "Post": {"author": REQUIRED, "title": "", "tags": [], "score": 0.0},
        "Comment": {"post": REQUIRED, "author": None, "text": ""},
    },
    2: {
        "Author": {"name": "", "age": 0, "bio": REQUIRED},
        "Post": {"author": REQUIRED, "title": "", "tags": []},
        "Comment": {"post": REQUIRED, "author": None, "text": ""},
    },
}
#: Reference fields: model -> field -> the model it points at.
REFS = {
    "Author": {},
    "Post": {"author": "Author"},
    "Comment": {"post": "Post", "author": "Author"},
}
#: The cascades the test may ask for, by model.
CASCADES = {
    "Author": [[]],
    "Post": [[], ["author"]],
    "Comment": [[], ["post"], ["post__author"], ["author"], ["post", "author"]],
}
#: The empty value ``migrate`` gives a new field without a default, by field.
BLANKS = {"bio": ""}
TYPES = {
    "name": str,
    "age": int,
    "bio": str,
    "author": str,
    "post": str,
    "title": str,
    "tags": list,
    "score": float,
    "text": str,
}

Tables = dict[str, dict[str, dict[str, Any]]]


class Reference:
    """The store as plain dicts, and the JSON files ``save`` writes."""

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.tables: Tables = {model: {} for model in MODELS}
        #: The rows in each model's JSON file (None: no file yet).
        self.files: dict[str, list[dict[str, Any]] | None] = dict.fromkeys(MODELS)

    def copy(self) -> Reference:
        return copy.deepcopy(self)

    # --- the operations ---------------------------------------------------------------

    def apply(self, op: dict[str, Any]) -> Any:
        """Perform ``op``; returns the expected reply, or ERROR (then nothing changed)."""
        kind = op["op"]
        if kind == "create":
            return self._create(op["model"], dict(op["fields"]))
        if kind == "update":
            return self._update(op["model"], op["pks"], op["fields"])
        if kind == "drop":
            paths = [path.split("__") for path in op["cascade"]]
            return self._drop(op["model"], self._existing(op["model"], op["pks"]), paths)
        if kind == "get_or_create":
            return self._get_or_create(op["model"], op["fields"])
        if kind == "save":
            self.files = {m: [self._json(m, pk) for pk in self.tables[m]] for m in MODELS}
            return True
        if kind == "load":
            for model, rows in self.files.items():
                if rows is not None:
                    self.tables[model] = {
                        row["pk"]: {k: v for k, v in row.items() if k != "pk"} for row in rows
                    }
            return True
        if kind == "migrate":  # same version: nothing to change
            return ANY
        raise AssertionError(f"unknown op {kind}")

    def _valid(self, model: str, fields: dict[str, Any]) -> bool:
        known = FIELDS[self.version][model]
        for name, value in fields.items():
            if name == "pk":
                if not isinstance(value, str) or not value:
                    return False
                continue
            if name not in known:
                return False
            if value is None and known[name] is None:
                continue
            kind = TYPES[name]
            if kind is float:
                if type(value) not in (int, float) or not math.isfinite(value):
                    return False
            elif type(value) is not kind:
                return False
        return True

    def _refs_exist(self, model: str, fields: dict[str, Any]) -> bool:
        for name, target in REFS[model].items():
            value = fields.get(name)
            if value is not None and value not in self.tables[target]:
                return False
        return True

    def _create(self, model: str, fields: dict[str, Any]) -> Any:
        known = FIELDS[self.version][model]
        if not self._valid(model, fields):
            return ERROR
        if any(default is REQUIRED and name not in fields for name, default in known.items()):
            return ERROR
        pk = fields.pop("pk")
        if pk in self.tables[model] or not self._refs_exist(model, fields):
            return ERROR
        row = {name: copy.deepcopy(default) for name, default in known.items()}
        row.update(copy.deepcopy(fields))
        row = {name: float(v) if TYPES[name] is float else v for name, v in row.items()}
        self.tables[model][pk] = row
        return pk

    def _existing(self, model: str, pks: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(pk for pk in pks if pk in self.tables[model]))

    def _update(self, model: str, pks: list[str], fields: dict[str, Any]) -> Any:
        if "pk" in fields or not self._valid(model, fields):
            return ERROR
        known = FIELDS[self.version][model]
        if any(fields[name] is None and known[name] is not None for name in fields):
            return ERROR
        if not self._refs_exist(model, fields):
            return ERROR
        chosen = self._existing(model, pks)
        for pk in chosen:
            for name, value in fields.items():
                self.tables[model][pk][name] = (
                    float(value) if TYPES[name] is float else copy.deepcopy(value)
                )
        return len(chosen)

    def _drop(self, model: str, pks: list[str], paths: list[list[str]]) -> int:
        table = self.tables[model]
        gone = [(pk, table.pop(pk)) for pk in pks if pk in table]
        count = len(gone)
        heads: dict[str, list[list[str]]] = {}
        for path in paths:
            heads.setdefault(path[0], [])
            if len(path) > 1:
                heads[path[0]].append(path[1:])
        for head, rest in heads.items():
            target = REFS[model][head]
            pointed = dict.fromkeys(row[head] for _, row in gone if row[head] is not None)
            found = [pk for pk in pointed if pk in self.tables[target]]
            count += self._drop(target, found, rest)
        return count

    def _get_or_create(self, model: str, fields: dict[str, Any]) -> Any:
        if not self._valid(model, fields):
            return ERROR
        pk = fields["pk"]
        row = self.tables[model].get(pk)
        if row is not None:
            same = all(row[name] == value for name, value in fields.items() if name != "pk")
            return pk if same else ERROR  # a different row holds the pk
        return self._create(model, dict(fields))

    # --- versions -------------------------------------------------------------------------

    def migrate_to(self, version: int) -> None:
        """What ``python app.py migrate`` does to the store and the JSON files."""
        old, new = FIELDS[self.version], FIELDS[version]
        self.version = version
        for model in MODELS:
            self.tables[model] = {
                pk: self._upgrade(old[model], new[model], row)
                for pk, row in self.tables[model].items()
            }
            rows = self.files[model]
            if rows is not None:
                self.files[model] = [
                    {"pk": row["pk"], **self._upgrade(old[model], new[model], row)} for row in rows
                ]

    @staticmethod
    def _upgrade(old: dict[str, Any], new: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, default in new.items():
            if name in row and name in old:
                out[name] = row[name]
            else:
                out[name] = BLANKS[name] if default is REQUIRED else copy.deepcopy(default)
        return out

    # --- comparing ------------------------------------------------------------------------

    def _json(self, model: str, pk: str) -> dict[str, Any]:
        return {"pk": pk, **copy.deepcopy(self.tables[model][pk])}

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """The state as the app's ``dump`` signal sends it."""
        return {model: [self._json(model, pk) for pk in self.tables[model]] for model in MODELS}
