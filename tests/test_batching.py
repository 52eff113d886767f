"""Batch order: every row once per epoch, a new order each epoch, similar lengths together."""

import numpy as np

from qlora_gui.core.data.batching import epoch_batches, padding_share


def test_each_epoch_covers_every_row_once_in_a_new_order():
    lengths = np.random.default_rng(0).integers(5, 300, size=203)
    e0 = epoch_batches(lengths, 8, seed=1, epoch=0)
    e1 = epoch_batches(lengths, 8, seed=1, epoch=1)
    for batches in (e0, e1):
        rows = np.concatenate(batches)
        assert sorted(rows.tolist()) == list(range(203))
        assert sum(len(b) < 8 for b in batches) == 1  # only one short batch; no row dropped
    assert [b.tolist() for b in e0] != [b.tolist() for b in e1]
    assert [b.tolist() for b in e0] == [b.tolist() for b in epoch_batches(lengths, 8, seed=1, epoch=0)]


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(0).integers(5, 300, size=2000)
    grouped = epoch_batches(lengths, 8, seed=0, epoch=0)
    shuffled = [np.random.default_rng(0).permutation(2000)[i : i + 8] for i in range(0, 2000, 8)]
    assert padding_share(lengths, grouped) < 0.1 < padding_share(lengths, shuffled)


def test_ranks_get_disjoint_equal_shares():
    lengths = np.arange(10, 110)
    shares = [epoch_batches(lengths, 4, 0, 0, rank=r, world=2) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1])
    assert not set(np.concatenate(shares[0])) & set(np.concatenate(shares[1]))
