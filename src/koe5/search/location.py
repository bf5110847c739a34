"""Where an index lives: a folder (the embedded default) or a PostgreSQL URL naming an index in a database.

A URL is ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE?index=NAME`` (``postgres://`` too, any
other libpq parameter kept): the index is the schema ``NAME`` of that database (see
:mod:`koe5.search.postgres`). Everything else is a folder.

Example::

    from koe5.search.location import is_database, split_url

    is_database("my-index")                                          # False
    split_url("postgresql://me@db:5432/app?index=manuals&sslmode=require")
    # ('postgresql://me@db:5432/app?sslmode=require', 'manuals')
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from koe5.errors import InputError

SCHEMES = ("postgresql://", "postgres://")
#: An index name: a plain lower-case SQL identifier (a schema name that needs no quoting anywhere).
NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def is_database(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


def split_url(url: str) -> tuple[str, str]:
    """The connection string without ``index=``, and the index name (checked)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [v for k, v in query if k == "index"]
    if len(names) != 1:
        raise InputError(f"{redact(url)}: name the index with one ?index=NAME (e.g. ...?index=manuals)")
    name = names[0]
    if not NAME.fullmatch(name):
        raise InputError(
            f"{redact(url)}: index name {name!r} must be lower-case letters, digits and _ (not first a "
            "digit, at most 48 characters): it is the index's schema name"
        )
    rest = urlencode([(k, v) for k, v in query if k != "index"])
    return urlunsplit(parts._replace(query=rest)), name


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
