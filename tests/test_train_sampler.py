"""The group-aware batch sampler: no group or text twice in a (global) batch, a reproducible order."""

from __future__ import annotations

import pytest

from koe5.errors import InputError
from koe5.train.sampler import GroupBatchSampler, row_keys


def _data(n_groups=12, per_group=5):
    queries = [f"질문 {g}-{i}" for g in range(n_groups) for i in range(per_group)]
    positives = [f"답 {g}" if i == 0 else f"답 {g}-{i}" for g in range(n_groups) for i in range(per_group)]
    groups = [f"g{g}" for g in range(n_groups) for _ in range(per_group)]
    return [queries, positives], groups


def _sampler(columns, groups, batch_size, world_size=1, seed=0, drop_last=False):
    keys = row_keys(columns, groups)
    return GroupBatchSampler(
        list(range(len(keys))), batch_size, drop_last, seed=seed, keys=keys, world_size=world_size
    )


def test_no_group_and_no_text_twice_in_a_batch():
    columns, groups = _data()
    columns[1][7] = columns[1][30]  # two rows of different groups share a positive text
    sampler = _sampler(columns, groups, batch_size=8)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len({groups[i] for i in batch}) == len(batch)
        texts = [c[i] for c in columns for i in batch]
        assert len(set(texts)) == len(texts)
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen))  # no row twice in an epoch


def test_order_is_a_function_of_seed_and_epoch():
    columns, groups = _data()
    a, b = _sampler(columns, groups, 8, seed=3), _sampler(columns, groups, 8, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    assert list(_sampler(columns, groups, 8, seed=4)) != list(a)


def test_devices_take_consecutive_slices_of_one_global_batch():
    columns, groups = _data()
    single = list(_sampler(columns, groups, 8, drop_last=True))
    pair = _sampler(columns, groups, 4, world_size=2)
    slices = list(pair)
    assert len(slices) == len(pair) == 2 * len(single)
    assert [s0 + s1 for s0, s1 in zip(slices[::2], slices[1::2], strict=True)] == single


def test_batches_too_large_or_too_few_groups():
    columns, groups = _data(n_groups=3, per_group=2)
    with pytest.raises(InputError, match="larger than the training data"):
        _sampler(columns, groups, 7)
    with pytest.raises(InputError, match="too few distinct groups"):
        list(_sampler(columns, groups, 4, drop_last=True))
