"""A batch sampler for in-batch-negative losses: no text twice in a batch, no group twice in a batch.

Two rows of one group (Welfare-QA's ~20 paraphrased questions about one programme, the ten paraphrases
of a paraKQC set) in one batch would be each other's false negatives; so would two rows sharing a text.
Batches are planned over the *global* batch (all devices together), then cut into one slice per
device in rank order, so cross-device negatives obey the same rule. The plan depends only on the
data, the seed and the epoch: a resumed run sees the same batches, on any number of devices.

>>> keys = row_keys([queries, positives], groups)                          # doctest: +SKIP
>>> next(iter(GroupBatchSampler(dataset, 4, drop_last=False, keys=keys)))     # doctest: +SKIP
[5, 0, 9, 2]
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

from koe5.errors import InputError

log = logging.getLogger("koe5")


def row_keys(columns: Sequence[Sequence[str]], groups: Sequence[str] | None = None) -> list[frozenset[int]]:
    """Per row, the hashes of its texts and of its group: two rows conflict when their keys meet.

    ``columns`` are the text columns (lists of equal length). Python's string hash differs between
    processes, but only equality matters here, so every process plans the same batches.
    """
    n = len(columns[0]) if columns else 0
    keys = []
    for i in range(n):
        key = {hash(column[i]) for column in columns}
        if groups is not None:
            key.add(hash(("group", groups[i])))
        keys.append(frozenset(key))
    return keys


class GroupBatchSampler(DefaultBatchSampler):
    """Batches without repeated texts or groups, planned per global batch and sliced per device.

    ``batch_size`` is the per-device batch (what the Trainer passes); ``world_size`` devices take
    consecutive slices of each global batch of ``batch_size * world_size`` rows. Rows that cannot be
    placed without a conflict wait for a later batch; at the end of an epoch the rows left over (a
    last global batch that cannot be filled) are dropped if ``drop_last``.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        keys: Sequence[frozenset[int]],
        world_size: int = 1,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last or world_size > 1,  # every device needs a full slice
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        self.keys = keys
        self.world_size = world_size
        self.global_batch = batch_size * world_size
        if len(keys) < self.global_batch:
            raise InputError(
                f"the batch ({self.global_batch} rows) is larger than the training data ({len(keys)} rows); "
                "lower --batch-size"
            )
        self._plans: dict[int, list[list[int]]] = {}

    def _plan(self, epoch: int) -> list[list[int]]:
        """The epoch's global batches (cached: ``__len__`` and ``__iter__`` must agree)."""
        if epoch in self._plans:
            return self._plans[epoch]
        generator = torch.Generator().manual_seed(int(self.seed) + int(epoch))
        order = torch.randperm(len(self.keys), generator=generator).tolist()
        batches: list[list[int]] = []
        waiting: list[int] = []  # rows that conflicted with an earlier batch, in their shuffled order
        stream = iter(order)
        exhausted = False
        while True:
            batch: list[int] = []
            taken: set[int] = set()
            still_waiting: list[int] = []
            for i in waiting:
                if len(batch) < self.global_batch and taken.isdisjoint(self.keys[i]):
                    batch.append(i)
                    taken.update(self.keys[i])
                else:
                    still_waiting.append(i)
            waiting = still_waiting
            while len(batch) < self.global_batch and not exhausted:
                i = next(stream, None)
                if i is None:
                    exhausted = True
                elif taken.isdisjoint(self.keys[i]):
                    batch.append(i)
                    taken.update(self.keys[i])
                else:
                    waiting.append(i)
            if len(batch) == self.global_batch:
                batches.append(batch)
                continue
            if batch and not self.drop_last:
                batches.append(batch)
            if waiting:
                log.warning(
                    "koe5: %d of %d rows found no batch without a repeated text or group this epoch",
                    len(waiting) + (len(batch) if self.drop_last else 0),
                    len(self.keys),
                )
            break
        if not batches:
            raise InputError(
                f"no batch of {self.global_batch} rows without a repeated text or group can be formed: "
                "the data has too few distinct groups for this batch size; lower --batch-size"
            )
        self._plans = {epoch: batches}
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._plan(self.epoch):
            if len(batch) < self.global_batch:  # the short last batch (one device, no drop_last)
                yield batch
                continue
            for rank in range(self.world_size):
                yield batch[rank * self.batch_size : (rank + 1) * self.batch_size]

    def __len__(self) -> int:
        """The number of per-device batches this epoch yields (all devices together)."""
        return sum(self.world_size if len(b) == self.global_batch else 1 for b in self._plan(self.epoch))
