"""standardise_inputs: any neural head can standardise clip features by the training clips' statistics, which
makes it blind to a per-dimension scale and offset of the features and is saved with the model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.base import input_statistics
from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.synth import synthetic_sequence_data

torch.set_num_threads(1)
SMALL = {
    "lstm": {"epochs": 3, "hidden": 8, "window": None, "batch_size": 8},
    "mlp": {"epochs": 3, "hidden": [8], "batch_size": 8},
    "gdlt": {"epochs": 2, "hidden": 16, "d_model": 16, "ffn": 16, "window": None, "batch_size": 8},
}


def _affine(data, scale, offset):
    return replace(data, x=[x * scale + offset for x in data.x])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_standardised_head_ignores_a_per_dimension_scale_and_offset(name):
    data = synthetic_sequence_data("pooled", n=30, seed=0, dim=6, length=(6, 10))
    train, test = data.subset(range(24)), data.subset(range(24, 30))
    rng = np.random.default_rng(1)
    scale, offset = rng.uniform(0.5, 20, 6).astype(np.float32), rng.normal(0, 50, 6).astype(np.float32)
    predictions = []
    for transform in ((1.0, 0.0), (scale, offset)):
        head = get_head(name)(**SMALL[name], standardise_inputs=True)
        head.fit(_affine(train, *transform), _affine(test, *transform), seed=0, progress=False)
        predictions.append(head.predict(_affine(test, *transform)).y)
        restored = get_head(name)()
        restored.load_state_dict(head.state_dict())  # the statistics travel with the model
        np.testing.assert_allclose(restored.predict(_affine(test, *transform)).y, predictions[-1], atol=1e-5)
    np.testing.assert_allclose(predictions[0], predictions[1], atol=2e-3)


def test_statistics_are_the_training_clips_and_other_shapes_are_refused():
    videos = [np.arange(6, dtype=np.float32).reshape(3, 2), np.full((2, 2), 7.0, dtype=np.float32)]
    mean, std = input_statistics(videos)
    clips = np.concatenate(videos)
    np.testing.assert_allclose(mean, clips.mean(0))
    np.testing.assert_allclose(std, clips.std(0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(T, D\) clip features"):
        input_statistics([np.zeros((3, 2, 2), dtype=np.float32)])
