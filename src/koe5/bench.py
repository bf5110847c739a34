"""Moved to :mod:`koe5.evaluation`; this module re-exports it for one release."""

import warnings

from koe5.evaluation import *  # noqa: F403
from koe5.evaluation import __all__  # noqa: F401

warnings.warn("koe5.bench moved to koe5.evaluation", DeprecationWarning, stacklevel=2)
