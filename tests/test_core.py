"""CoRe: the tree's leaf distribution, difficulty-grouped exemplars, and learning a pooled signal.

CoRe compares time-pooled features, so on the ``ordered`` synthetic data it is by construction no better than a
pooled ridge (its input *is* the pooled features); it is tested on the ``pooled`` signal it can represent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.core import CoReHead, RegressTree
from aqa_pipeline.synth import synthetic_sequence_data
from aqa_pipeline.train.metrics import spearman

torch.set_num_threads(1)


def test_tree_leaf_log_probabilities_form_a_distribution():
    tree = RegressTree(in_dim=7, hidden=8, depth=5)
    log_prob, offsets = tree(torch.randn(3, 7))
    assert log_prob.shape == offsets.shape == (3, 16)
    torch.testing.assert_close(log_prob.logsumexp(1), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("regressor", ["flat", "tree"])
def test_learns_a_pooled_signal(regressor):
    data = synthetic_sequence_data("pooled", n=200, seed=0, dim=16)
    train, val, test = data.subset(range(100)), data.subset(range(100, 130)), data.subset(range(130, 200))
    head = CoReHead(regressor=regressor, hidden=64, epochs=15, batch_size=16, eval_every=3)
    head.fit(train, val, seed=0, progress=False)
    prediction = head.predict(test)
    assert spearman(prediction.y, test.y) > 0.85
    votes = np.stack([e["exemplar_delta"] for e in prediction.explanations])
    assert votes.shape == (70, 10)


def test_difficulty_groups_the_exemplars_and_the_intervals():
    data = synthetic_sequence_data("pooled", n=40, seed=0, dim=8)
    data.difficulty = np.array([2.0, 3.0] * 20)
    train, test = data.subset(range(30)), data.subset(range(30, 40))
    head = CoReHead(hidden=16, epochs=1, n_exemplars=4)
    head.fit(train, None, seed=3, progress=False)
    assert head.pool.kind == "difficulty"
    lists = head.exemplar_lists(test)
    np.testing.assert_array_equal(train.difficulty[lists], np.repeat(test.difficulty[:, None], 4, axis=1))
    other = CoReHead(hidden=16, epochs=1, n_exemplars=4)
    other.fit(train, None, seed=4, progress=False)
    assert not np.array_equal(other.exemplar_lists(test), lists)  # the seed draws the lists
    pinned = CoReHead(hidden=16, epochs=1, n_exemplars=4, exemplar_seed=11)
    pinned.fit(train, None, seed=4, progress=False)
    assert pinned.exemplar_seed == 11
