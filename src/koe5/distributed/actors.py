"""The actors of one Ray run: how many, what each holds, and their results in order."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from koe5.errors import EngineError


@dataclass(frozen=True)
class Plan:
    """The actors of one run: how many, and what each holds (CPUs, GPUs) and may retry."""

    actors: int
    cpus: float
    gpus: float
    restarts: int

    @contextlib.contextmanager
    def start(self, cls: type, *args, name: str | None = None) -> Iterator[list]:
        """``actors`` instances of ``cls(*args, device, threads)``, named ``name-<i>``, for the ``with``
        block; they are killed after it.

        Ray restarts a dead actor up to ``restarts`` times and runs the calls it lost again.
        """
        import ray

        remote = ray.remote(cls)
        device, threads = ("cuda" if self.gpus else None), max(1, int(self.cpus))
        actors = [
            remote.options(
                **({"name": f"{name}-{i}"} if name else {}),
                num_cpus=self.cpus,
                num_gpus=self.gpus,
                max_restarts=self.restarts,
                max_task_retries=self.restarts,
            ).remote(*args, device, threads)
            for i in range(self.actors)
        ]
        try:
            yield actors
        finally:
            for actor in actors:
                ray.kill(actor)

    @contextlib.contextmanager
    def pool(self, cls: type, *args, name: str | None = None) -> Iterator:
        """The actors of :meth:`start` in an :class:`ray.util.ActorPool`, for the ``with`` block."""
        from ray.util import ActorPool

        with self.start(cls, *args, name=name) as actors:
            yield ActorPool(actors)


def next_result(pool):
    """The next result of an :class:`ray.util.ActorPool` in submission order (errors as :func:`result`)."""
    return result(pool.get_next)


def result(get, *args):
    """``get(*args)`` (``ray.get``, a pool's ``get_next``); an actor's own error (e.g. the model is not
    on that machine) as itself, an actor lost for good as an EngineError."""
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return get(*args)
    except RayTaskError as exc:
        raise exc.as_instanceof_cause() from None
    except RayActorError as exc:
        raise EngineError(f"a Ray actor died and could not be restarted: {exc}") from exc
