"""Running koe5's heavy work on a cluster: index builds and corpus encoding on Ray (``koe5[ray]``).

:class:`RayEngine` says where (a local cluster, ``auto`` or an address) and with how many actors;
``Index.build(..., engine=RayEngine())`` builds the same folder a single-process build writes
(:mod:`~koe5.distributed.indexing`), and :func:`encode_to_parquet` writes a corpus's vectors as
Parquet shards (:mod:`~koe5.distributed.encoding`). Ray itself is imported only when a run starts.
"""

from koe5.distributed.encoding import encode_to_parquet, read_vectors
from koe5.distributed.engine import ENGINES, RayEngine

__all__ = ["ENGINES", "RayEngine", "encode_to_parquet", "read_vectors"]
