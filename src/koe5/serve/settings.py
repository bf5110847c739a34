"""What a koe5 server accepts and how it batches: one dataclass, the configuration as data.

Every limit has a name; a request over a limit gets an error whose ``code`` is that name (see
:mod:`koe5.serve.errors`), so a client can tell which one it hit.

Example::

    from koe5.serve import Settings
    Settings(max_inputs=64, batch_wait_ms=5, api_key="s3cret")
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from koe5 import env
from koe5.errors import SettingsError

#: Environment variable holding the bearer token that every request (but ``/health``) must carry.
API_KEY_ENV = env.API_KEY.name


@dataclass(frozen=True)
class Settings:
    """Limits, batching and access of a server.

    Limits (status code, error ``code``):

    * ``max_inputs``: texts per request (413, ``max_inputs``);
    * ``max_chars``: characters per text, checked before tokenising (413, ``max_chars``);
    * ``max_body_bytes``: request body size (413, ``max_body_bytes``);
    * ``max_queue``: requests admitted and not yet answered; more get 429 ``max_queue``;
    * ``max_k``: results per search (422, ``max_k``);
    * ``max_rerank_depth``: documents a ``/search`` with ``rerank`` reads with the reranker
      (422, ``max_rerank_depth``);
    * inputs longer than the model's ``max_length`` tokens are cut when the request's ``truncate``
      is true (default ``auto_truncate``), refused otherwise (413, ``max_tokens``).

    Batching: requests queued together are encoded as one batch of at most ``batch_tokens`` tokens
    and ``batch_inputs`` texts (default: four of the encoder's forward passes; the encoder sorts the
    batch's texts by length and splits it into passes, see :mod:`koe5.serve.batcher`); the worker
    waits up to ``batch_wait_ms`` after the oldest queued request for others to join.
    ``batching=False`` encodes each request alone. The reranker's worker batches the same way, its
    pairs counted against the same two limits (default: four of the reranker's forward passes,
    :mod:`koe5.serve.rerank_batcher`). ``max_queue`` holds for each worker.

    ``allow_dimensions``: accept ``dimensions`` below the model's (truncate and renormalise) for
    any model; otherwise only for models the registry lists with ``matryoshka_dims``.
    ``drain_seconds``: how long a shutdown waits for requests in flight.

    Connections: a request must arrive whole (headers and body) within ``read_timeout_s`` of the
    connection opening or of the previous response, else the connection is closed (idle and
    dribbling clients would otherwise hold it forever); at most ``max_connections`` connections and
    requests at once, more get 503.

    A value out of range raises :class:`~koe5.errors.SettingsError` naming the field.
    """

    max_inputs: int = 256
    max_chars: int = 20_000
    max_body_bytes: int = 4 * 1024 * 1024
    max_queue: int = 256
    max_k: int = 100
    max_rerank_depth: int = 1000
    auto_truncate: bool = True
    batching: bool = True
    batch_wait_ms: float = 2.0
    batch_tokens: int | None = None
    batch_inputs: int | None = None
    allow_dimensions: bool = False
    api_key: str | None = field(default=None, repr=False)
    drain_seconds: float = 30.0
    read_timeout_s: float = 30.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
                continue
            if value < 0 or (value == 0 and f.name not in ("batch_wait_ms", "drain_seconds")):
                raise SettingsError(f"Settings.{f.name} must be positive, got {value}")
        key = self.api_key
        if key is not None and not (key.isascii() and key.isprintable() and key.strip() == key and key):
            # an HTTP header carries it: printable ASCII only (the message must not show the key)
            raise SettingsError(
                f"the API key ({API_KEY_ENV}) must be non-empty printable ASCII without surrounding spaces"
            )

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Settings with ``api_key`` from ``KOE5_API_KEY`` (if set and not given in ``overrides``)."""
        overrides.setdefault("api_key", env.raw(env.API_KEY))
        return cls(**overrides)
