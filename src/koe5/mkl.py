"""Moved to :mod:`koe5.cpu.mkl`; this name stays importable for one release.

The module itself is put in its place (not a copy of its names), so that its state, such as
``status``, reads the same through either name.
"""

import sys
import warnings

from koe5.cpu import mkl as _moved

warnings.warn("koe5.mkl moved to koe5.cpu.mkl", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
