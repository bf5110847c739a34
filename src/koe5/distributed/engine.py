"""Where the work of a Ray run happens: a local cluster started for the run, or an existing one.

:class:`RayEngine` is the settings of a run (address, actors and their resources, batch size) and
:meth:`RayEngine.session` the connection: it starts a local cluster when no address is given (and
stops it after), joins one a caller already started (``ray.init`` in the same process), or connects to
``address`` (``auto``, ``host:port`` or ``ray://host:port``). An address that does not answer is an
:class:`~koe5.errors.EngineError` within ``connect_timeout`` seconds: ``ray.init`` itself would retry
a dead GCS address for about a minute before saying so.

Example::

    from koe5.distributed import RayEngine
    from koe5.search import Index
    import koe5

    Index.build("docs.jsonl", koe5.load(), "my-index", engine=RayEngine(actors=2))
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from koe5.distributed.actors import Plan
from koe5.errors import EngineError, InputError

log = logging.getLogger("koe5")

ENGINES = ("local", "ray")


@dataclass(frozen=True, kw_only=True)
class RayEngine:
    """The settings of a run on Ray.

    ``address``: ``None`` (a local cluster for this run), ``"auto"`` (the cluster this machine is part
    of) or a cluster address (``host:port``, ``ray://host:port``). ``actors``: encoder actors (default:
    the cluster's CPUs / ``cpus_per_actor``, or its GPUs / ``gpus_per_actor``); each loads the model
    once. ``gpus_per_actor``: default 1 where the cluster has GPUs (actors encode on CUDA), else 0.
    ``batch_size``: inputs per encoder batch on an actor (default: the encoder's own). ``in_flight``:
    calls queued per actor (segments of a build; keeps every actor busy while the driver writes).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None
    batch_size: int | None = None
    in_flight: int = 2
    connect_timeout: float = 10.0
    max_restarts: int = 3

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise InputError(f"actors must be at least 1, got {self.actors}")
        if self.cpus_per_actor <= 0 or (self.gpus_per_actor or 0) < 0:
            raise InputError("cpus_per_actor must be positive and gpus_per_actor not negative")
        if self.in_flight < 1 or self.connect_timeout <= 0:
            raise InputError("in_flight and connect_timeout must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    def pipeline(self, target):
        """A context manager giving an index build's target whose segments are prepared on actors."""
        from koe5.distributed.indexing import ray_pipeline

        return ray_pipeline(target, self)

    def started(self, analyzer=None):
        """A context manager: the cluster joined (or started) and the index build's actors starting,
        for the ``with`` block; it yields the ``engine`` to give ``Index.build``.

        An actor's start (importing torch and sentence-transformers, loading the model and Kiwi)
        takes seconds of one core. ``Index.build(engine=RayEngine(...))`` starts the actors itself
        and waits for them; started here first, they start while this process loads its own model.
        ``analyzer`` is the :class:`~koe5.search.KiwiAnalyzer` the index will be built with (default:
        the default one)::

            with RayEngine(actors=2).started() as engine:
                encoder = koe5.load("default")
                Index.build("docs.jsonl", encoder, "my-index", engine=engine)
        """
        from koe5.distributed.indexing import started_actors
        from koe5.search.korean import KiwiAnalyzer

        return started_actors(self, (analyzer or KiwiAnalyzer()).config)

    @contextlib.contextmanager
    def session(self) -> Iterator[Plan]:
        """Connected to the cluster for the ``with`` block; yields the actors to start there."""
        ray = require_ray()
        started = False
        if self.address not in (None, "auto"):
            check_reachable(self.address, self.connect_timeout)
        if not ray.is_initialized():  # else: the caller's own ray.init, used as it is
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a new local cluster"
                raise EngineError(f"cannot start or reach a Ray cluster at {where}: {exc}") from exc
            started = True
        try:
            yield self._plan(ray.cluster_resources())
        finally:
            if started:
                ray.shutdown()

    def _plan(self, resources: dict) -> Plan:
        gpus = resources.get("GPU", 0)
        per_actor = self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if gpus else 0.0)
        if per_actor and not gpus:
            raise EngineError("gpus_per_actor is set but the Ray cluster has no GPUs")
        if self.actors is not None:
            actors = self.actors
        elif per_actor:
            actors = max(1, int(gpus // per_actor))
        else:
            actors = max(1, int(resources.get("CPU", 1) // self.cpus_per_actor))
        return Plan(actors, self.cpus_per_actor, per_actor, self.max_restarts)


def require_ray():
    try:
        import ray
    except ImportError:
        raise EngineError("the Ray engine needs Ray: pip install 'koe5[ray]'") from None
    return ray


def check_reachable(address: str, timeout: float) -> None:
    """:class:`EngineError` unless something accepts TCP connections at ``address`` within ``timeout``."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"Ray address {address!r} is not auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise EngineError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}, waited up to {timeout:g} s); "
            "start one with `ray start --head` or leave out --address for a local one"
        ) from exc
