"""koe5: Korean text retrieval with E5-family embedding models.

>>> import koe5
>>> enc = koe5.load()                                   # doctest: +SKIP
>>> enc.encode_queries(["한국의 수도는?"]).shape          # doctest: +SKIP
(1, 384)
"""

__version__ = "0.1.0"

from koe5.encoder import Encoder, load
from koe5.errors import InputError, Koe5Error, ModelCacheError, ModelError, SourceFormatError

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
