"""The ``koe5`` command line: a thin shell over the library (everything here is a library call).

Each module registers the commands of one stage on the shared ``app`` of :mod:`koe5.cli.options`;
``python -m koe5`` runs it too (:mod:`koe5.__main__`).
"""

from koe5.cli import bench, encode, rerank, search, serve, train  # noqa: F401  (registers the commands)
from koe5.cli.options import app

__all__ = ["app"]
