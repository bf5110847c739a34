"""A koe5 index in PostgreSQL + pgvector (``pip install 'koe5[postgres]'``).

Give a URL where a folder is accepted: ``postgresql://USER@HOST:5432/DB?index=NAME``. The modules:
``database`` (connections, the tables, the locks), ``writing`` (build, add, delete), ``queries`` (the
SQL of a search), ``index`` (:class:`PgIndex`), ``local`` (a throwaway server from the pgserver
wheel, for trying it out and for tests).
"""

from koe5.search.postgres.index import PgIndex

__all__ = ["PgIndex"]
