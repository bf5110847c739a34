"""Fetching a task's dataset from the Hugging Face hub at a pinned revision.

``HubDataset`` looks like ``{config: DatasetDict}`` and loads each config on first use through
``datasets.load_dataset(path, config, revision=...)``; ``transforms`` turns it into queries, corpus and
qrels. Any failure becomes a ``HubDatasetError`` naming the dataset, config and revision.

>>> hub = HubDataset("taeminlee/Ko-StrategyQA", "d243889a3eb6654029dbd7e7f9319ae31d58f97c")  # doctest: +SKIP
>>> hub["queries"]                                                                           # doctest: +SKIP
DatasetDict({...})
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from koe5.errors import HubDatasetError
from koe5.tasks.data import DocJoin, RetrievalData, assemble
from koe5.tasks.transforms import SHAPES

_OFFLINE_ERRORS = (
    "ConnectionError",
    "OfflineModeIsEnabled",
    "LocalEntryNotFoundError",
    "Timeout",
    "ConnectTimeout",
    "ReadTimeout",
    "NameResolutionError",
    "MaxRetryError",
)


_OFFLINE = (
    "the Hugging Face hub is unreachable or offline mode is on (HF_HUB_OFFLINE); "
    "the bundled tasks load offline (koe5.tasks.BUNDLED)"
)


class HubDataset(Mapping[str, Any]):
    """The configs of one hub dataset at one revision, each loaded when first asked for."""

    def __init__(self, path: str, revision: str) -> None:
        self.path = path
        self.revision = revision
        self._names: list[str] | None = None
        self._loaded: dict[str, Any] = {}
        self._checked = False

    def __repr__(self) -> str:
        return f"HubDataset({self.path!r}, revision={self.revision!r})"

    def _names_list(self) -> list[str]:
        if self._names is None:
            import datasets

            self._names = self._call(
                None, datasets.get_dataset_config_names, self.path, revision=self.revision
            )
        return self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names_list())

    def __len__(self) -> int:
        return len(self._names_list())

    def __contains__(self, name: object) -> bool:
        return name in self._names_list()

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            import datasets

            self._loaded[name] = self._call(
                name, datasets.load_dataset, self.path, name, revision=self.revision
            )
        return self._loaded[name]

    def _call(self, config: str | None, function: Any, *args: Any, **kwargs: Any) -> Any:
        what = f"{self.path} at revision {self.revision}" + (f", config {config!r}" if config else "")
        if not self._checked:  # one look-up first, instead of datasets' retries of every file
            from koe5.hub import unavailable

            problem = unavailable(self.path, "dataset", self.revision)
            if problem is not None:
                reason = str(problem) if problem.reason == "missing" else f"{_OFFLINE}: {problem}"
                raise HubDatasetError(f"{what}: cannot load from the Hugging Face hub: {reason}")
            self._checked = True
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # datasets raises many types; each is reported with what was asked for
            chain = [exc, exc.__cause__, exc.__context__]
            names = {type(e).__name__ for e in chain if e is not None} | {str(exc)}
            if any(marker in name for name in names for marker in _OFFLINE_ERRORS):
                reason = _OFFLINE
            else:
                reason = f"{type(exc).__name__}: {exc}"
            raise HubDatasetError(f"{what}: cannot load from the Hugging Face hub: {reason}") from exc


def load_hub(
    path: str,
    revision: str,
    shape: str,
    split: str,
    subset: str | None = None,
    *,
    doc_join: DocJoin = "strip",
    configs: Mapping[str, Any] | None = None,
) -> RetrievalData:
    """Load one split (and subset) of a hub dataset laid out as ``shape`` (a key of ``transforms.SHAPES``).

    ``configs`` replaces the hub with local ``{config: DatasetDict}`` data of the same layout.
    """
    origin = f"{path}@{revision}"
    source = HubDataset(path, revision) if configs is None else configs
    corpus, queries, qrels, skipped = SHAPES[shape](source, split, subset, origin)
    return assemble(corpus, queries, qrels, origin=origin, doc_join=doc_join, skipped=skipped)
