"""Group-aware intervals, their loss, and exemplar selection (heads-reference §2.2, §2.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.group_regression import (
    ExemplarPool,
    GroupIntervals,
    group_regression_loss,
    within_group_differences,
)


def test_differences_stay_within_groups():
    y = np.array([0.0, 1.0, 10.0, 12.0])
    assert sorted(within_group_differences(y, np.array(["a", "a", "b", "b"]))) == [1.0, 2.0]
    assert len(within_group_differences(y, None)) == 6


def test_interval_bounds_are_equal_count_quantiles_by_hand():
    # |Δ| over all pairs of [0, 1, 3, 6] = 1, 3, 6, 2, 5, 3 -> sorted [1, 2, 3, 3, 5, 6]
    # half = 2: quantile indices int(0*5)=0, int(.5*5)=2, int(1*5)=5 -> 1, 3, 6; first forced to 0, last to ptp = 6
    intervals = GroupIntervals.from_training(np.array([0.0, 1.0, 3.0, 6.0]), None, n_intervals=4)
    np.testing.assert_allclose(intervals.bounds, [[-6, -3], [-3, 0], [0, 3], [3, 6]])
    assert intervals.score_range == 6.0


def test_membership_edges_and_offsets_by_hand():
    intervals = GroupIntervals(np.array([[-6, -3], [-3, 0], [0, 3], [3, 6]], dtype=float))
    delta = torch.tensor([0.0, 3.0, -3.0, -0.5, 2.9, 7.0, -6.0])
    leaf, offset = intervals.assign(delta)
    # Δ ≥ 0 in [l, r): 0 -> [0,3), 3 -> [3,6); Δ < 0 in (l, r]: -3 -> (-6,-3], -0.5 -> (-3,0]; 7 clamps to the last
    assert leaf.tolist() == [2, 3, 0, 1, 2, 3, 0]
    np.testing.assert_allclose(offset, [0.0, 0.0, 1.0, 2.5 / 3, 2.9 / 3, 4 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(intervals.decode(leaf, offset.double()), delta.double(), atol=1e-6)


def test_tied_quantiles_never_make_an_empty_interval_the_target():
    intervals = GroupIntervals.from_differences(np.array([0, 0, 0, 0, 5.0]), n_intervals=4, score_range=5.0)
    np.testing.assert_allclose(intervals.bounds, [[-5, 0], [0, 0], [0, 0], [0, 5]])
    leaf, offset = intervals.assign(torch.tensor([0.0, -1.0]))
    assert leaf.tolist() == [3, 0]  # 0 falls in [0, 5), not the degenerate [0, 0)
    np.testing.assert_allclose(offset, [0.0, 0.8])


def test_singleton_groups_fall_back_to_all_pairs_and_bad_inputs_fail():
    intervals = GroupIntervals.from_training(np.array([0.0, 2.0]), np.array(["a", "b"]), n_intervals=2)
    np.testing.assert_allclose(intervals.bounds, [[-2, 0], [0, 2]])
    with pytest.raises(ValueError, match="even"):
        GroupIntervals.from_differences(np.ones(4), n_intervals=3)


def test_loss_is_nll_plus_true_leaf_squared_error():
    logits = torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5]]))
    offsets = torch.tensor([[0.9, 0.2], [0.4, 0.0]])
    cls, reg = group_regression_loss(logits, offsets, torch.tensor([1, 0]), torch.tensor([0.5, 0.1]))
    assert cls.item() == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2, rel=1e-6)
    assert reg.item() == pytest.approx(((0.2 - 0.5) ** 2 + (0.4 - 0.1) ** 2) / 2, rel=1e-6)


def _pool(kind="groups"):
    ids = [f"v{i}" for i in range(30)]
    keys = np.array([1.5, 2.0, 3.0] * 10) if kind == "difficulty" else np.array(["a", "b"] * 15)
    return ids, keys, ExemplarPool(ids, keys, kind)


def test_test_exemplar_lists_are_seeded_per_video_and_respect_groups():
    ids, keys, pool = _pool()
    queries = ["q0", "q1", "v3"]
    query_keys = np.array(["a", "b", "b"])
    first = pool.test_lists(queries, query_keys, 10, seed=7)
    assert np.array_equal(first, pool.test_lists(queries, query_keys, 10, seed=7))
    assert not np.array_equal(first, pool.test_lists(queries, query_keys, 10, seed=8))
    # order of the queries does not change a video's list
    assert np.array_equal(first[::-1], pool.test_lists(queries[::-1], query_keys[::-1], 10, seed=7))
    for row, key in zip(first, query_keys, strict=True):
        assert set(keys[row]) == {key} and len(set(row)) == 10
    assert 3 not in first[2]  # a training video is never its own exemplar


def test_small_groups_pad_with_minus_one_and_unseen_difficulty_borrows_nearest():
    ids, keys, pool = _pool("difficulty")
    lists = pool.test_lists(["q"], np.array([2.1]), 12, seed=0)
    assert (lists[0, :10] >= 0).all() and (lists[0, 10:] == -1).all()
    assert set(keys[lists[0, :10]]) == {2.0}


def test_training_exemplars_share_the_group_and_are_never_the_query():
    ids, keys, pool = _pool()
    rows = np.arange(30)
    partners = pool.sample_train(rows, np.random.default_rng(0))
    assert (partners != rows).all() and (keys[partners] == keys[rows]).all()
    assert np.array_equal(partners, pool.sample_train(rows, np.random.default_rng(0)))


def test_interval_loss_nll_and_bce_against_hand_computed_values():
    from aqa_pipeline.heads.group_regression import group_regression_loss

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    leaf, offsets, target = torch.tensor([0]), torch.tensor([[0.3, 0.5, 0.9]]), torch.tensor([0.5])
    nll, reg = group_regression_loss(logits, offsets, leaf, target, "nll")
    assert float(nll) == pytest.approx(-np.log(np.exp(2) / (np.exp(2) + 1 + np.exp(-1))), rel=1e-5)
    assert float(reg) == pytest.approx((0.3 - 0.5) ** 2)
    bce, _ = group_regression_loss(logits, offsets, leaf, target, "bce")
    sig = 1 / (1 + np.exp(-np.array([2.0, 0.0, -1.0])))
    expected = -(np.log(sig[0]) + np.log(1 - sig[1]) + np.log(1 - sig[2])) / 3
    assert float(bce) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="unknown interval loss"):
        group_regression_loss(logits, offsets, leaf, target, "hinge")
