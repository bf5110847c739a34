"""``python -m koe5 ...``: the ``koe5`` command, for environments without its script on PATH."""

from koe5.cli import app

if __name__ == "__main__":
    app()
