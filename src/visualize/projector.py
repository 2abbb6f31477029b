"""TensorBoard's Projector for ``src.visualize``: the penultimate layer's features of the test set (or a seeded
subset), each image as its sprite, with its true and predicted class."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from src.data.preprocessing import Preprocessing
from src.models.stages import run_network

EMBEDDING_TAG = "penultimate"  # the tensor's name in the Projector
METADATA_HEADER = ["true", "predicted", "correct", "test_index"]
BATCH = 1000  # test images per forward pass


def embedding_indices(total: int, samples: int | None, seed: int) -> Tensor:
    """The test images shown in the Projector: all of them, or ``samples`` drawn with ``seed`` (sorted)."""
    if samples is None or samples >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:samples].sort().values


def write_embedding(
    writer: Any,
    net: nn.Module,
    test_x: Tensor,
    test_y: Tensor,
    classes: list[str],
    preprocessing: Preprocessing,
    indices: Tensor,
) -> dict[str, Any]:
    """The penultimate layer's features of the test images at ``indices``, with each image as its sprite and its true
    class, predicted class, correctness and test index as metadata; returns what was written."""
    features, predicted = [], []
    for batch in indices.split(BATCH):
        logits, _, penultimate = run_network(net, test_x[batch])
        features.append(penultimate)
        predicted.append(logits.argmax(dim=1))
    features_t, predicted_t, true_t = torch.cat(features), torch.cat(predicted), test_y[indices]
    metadata = [
        [classes[t], classes[p], "yes" if t == p else "no", i]
        for t, p, i in zip(true_t.tolist(), predicted_t.tolist(), indices.tolist())
    ]
    writer.add_embedding(
        features_t,
        metadata=metadata,
        label_img=preprocessing.to_pixels(test_x[indices]),
        global_step=0,
        tag=EMBEDDING_TAG,
        metadata_header=METADATA_HEADER,
    )
    wrong = int((predicted_t != true_t).sum())
    return {
        "points": len(indices),
        "dimensions": features_t.shape[1],
        "misclassified": wrong,
        "accuracy": 1.0 - wrong / len(indices),
    }
