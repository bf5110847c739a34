"""Benchmark tasks for Korean retrieval: metadata plus a loader that returns plain dicts.

>>> from koe5.tasks import BUNDLED, get_task
>>> for name in BUNDLED:                                          # doctest: +SKIP
...     data = get_task(name).load()
...     print(name, len(data.queries), len(data.corpus))
AutoRAGRetrieval 114 720
BelebeleRetrieval 900 488
PublicHealthQA 77 77
SQuADKorV1Retrieval 5774 961
>>> dev = get_task("MultiLongDocRetrieval").load("dev")           # doctest: +SKIP
>>> mine = load_beir("path/to/beir/folder", split="test")          # doctest: +SKIP

Hub-only tasks (MultiLongDocRetrieval above) need the Hugging Face hub; the bundled ones load offline.

Modules: ``data`` (RetrievalData, doc_text, the checks), ``readers`` (files), ``beir``, ``trec``,
``transforms`` (hub layouts), ``hub`` (fetching), ``bundled`` (offline suite), ``catalog`` (tasks).
"""

from koe5.errors import HubDatasetError
from koe5.tasks.beir import load_beir
from koe5.tasks.catalog import BUNDLED, KNOWN_TASKS, Task, get_task
from koe5.tasks.data import RetrievalData, doc_text
from koe5.tasks.trec import load_trec

__all__ = [
    "BUNDLED",
    "KNOWN_TASKS",
    "HubDatasetError",
    "RetrievalData",
    "Task",
    "doc_text",
    "get_task",
    "load_beir",
    "load_trec",
]
