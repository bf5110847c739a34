"""The ``koe5`` command line: a thin shell over the library (everything here is a library call).

Each module registers the commands of one stage on the shared ``app``.
"""

from koe5.cli import bench, encode, search, serve, train  # noqa: F401  (registers the commands)
from koe5.cli._common import app

__all__ = ["app"]


if __name__ == "__main__":  # pragma: no cover
    app()
