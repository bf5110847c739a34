"""koe5: Korean text retrieval with E5-family embedding models.

>>> import koe5
>>> enc = koe5.load()                                   # doctest: +SKIP
>>> enc.encode_queries(["한국의 수도는?"]).shape          # doctest: +SKIP
(1, 384)
"""

from koe5._version import __version__
from koe5.cpu import mkl as _mkl
from koe5.encoder import Encoder, load
from koe5.errors import InputError, Koe5Error, ModelCacheError, ModelError, SourceFormatError

# Lets MKL use AVX-512 on AMD processors (koe5/cpu/mkl.py). It must run before PyTorch is imported, so
# nothing above imports torch: koe5's modules import it inside the functions that need it.
_mkl.enable()

__all__ = [
    "Encoder",
    "InputError",
    "Koe5Error",
    "ModelCacheError",
    "ModelError",
    "SourceFormatError",
    "__version__",
    "load",
]
