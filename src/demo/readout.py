"""One checkpoint's readings for the demo: image bytes or a 28x28 array -> the probabilities, the prepared input and
every stage's activations (read by hooks on the real forward pass), in the compact form the page decodes.

A network whose output layer is LeCun et al.'s Euclidean RBF (LeNet1998) also shows what that layer compares: F6's 84
outputs as a 7x12 picture beside the ten classes' bitmaps, and each class's penalty y_i, the squared distance between
them; its probabilities are the paper's (``src.models.outputs``), the rest going to the rubbish class."""

from __future__ import annotations

import base64
import json
import random
import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src.core.config import MNIST_SIDE
from src.core.errors import ImageError
from src.data.images import DEFAULT_MAX_PIXELS, MIN_CONTRAST, read_grayscale, to_mnist_format
from src.models.bitmaps import HEIGHT, WIDTH
from src.models.lenet1998 import EuclideanRBF
from src.models.outputs import probabilities, with_rubbish
from src.models.stages import StageReader, conv_layers, conv_weight, feature_stages, hidden_stages
from src.training.checkpoints import LoadedCheckpoint

BLANK = "nothing drawn"


class ApiError(Exception):
    """A request the API refuses: its HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def quantise(values: Tensor | np.ndarray, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """An array as uint8 steps between its min and max (or ``low``..``high``), base64: a stage's ~5,000 values
    become ~6.5 KB that the page decodes with one ``atob``, where JSON numbers would be ~40 KB to write and parse.
    A value is ``min + q / 255 * (max - min)``; the page needs only ``q`` (one colour scale per stage)."""
    a = values.detach().float().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=np.float32)
    lo = float(a.min()) if low is None else low
    hi = float(a.max()) if high is None else high
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    q = np.rint((a - lo) * scale).clip(0, 255).astype(np.uint8)
    return {"shape": list(a.shape), "min": lo, "max": hi, "data": base64.b64encode(q.tobytes()).decode("ascii")}


class Readout:
    """One checkpoint, loaded once, with its test set: predictions with every stage's activations.

    Its ``StageReader`` keeps hooks on the network's stages and collects one pass's outputs at a time, so forward
    passes are serialised by a lock; decoding and preparing images (most of a request's time) runs outside it, in
    parallel."""

    def __init__(self, loaded: LoadedCheckpoint, info: dict[str, Any], test_x: Tensor, test_y: Tensor,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:  # fmt: skip
        self.loaded, self.info, self.max_pixels = loaded, info, max_pixels
        self.net = loaded.net.eval()
        self.preprocessing = loaded.preprocessing
        self.classes = list(loaded.classes)
        self.stages = feature_stages(self.net) + hidden_stages(self.net)
        self.modules = [module for _, module in self.stages]
        # LeNet1998's output layer: ten fixed 7x12 bitmaps that F6's 84 outputs are compared with (None otherwise)
        rbf = getattr(self.net.classifier, "output", None)
        self.rbf: EuclideanRBF | None = rbf if isinstance(rbf, EuclideanRBF) else None
        self.lock = threading.Lock()
        self.random = random.Random()
        # The test set as the page shows it (28x28 uint8) and as the network reads it (normalised, padded).
        self.test_x, self.test_y = test_x, test_y
        self.test_pixels = (self.preprocessing.to_pixels(test_x)[:, 0] * 255.0).round().to(torch.uint8).numpy()
        with torch.inference_mode():
            predicted = torch.cat([self.net(batch).argmax(dim=1) for batch in test_x.split(1000)])
        self.test_predicted = predicted
        self.misclassified = (predicted != test_y).nonzero().flatten().tolist()
        # the stages, and with an RBF output layer its distances y_i (F6, its input, comes with every pass)
        self.read = StageReader(self.net, self.modules if self.rbf is None else [*self.modules, self.rbf])
        with torch.inference_mode():
            _, maps, _ = self.read(test_x[:1])
        # A stage of 1x1 maps (LeNet1998's C5: 120 maps of one unit each) is shown as what it is, a row of units.
        self.stage_shapes = [
            list(m.shape[1:2]) if m.shape[2:] == (1, 1) else list(m.shape[1:]) for m in maps[: len(self.stages)]
        ]

    # -- description
    def describe(self) -> dict[str, Any]:
        """What the page shows once: the checkpoint, the classes, the stages' names and shapes, conv1's filters; with an
        RBF output layer, its ten bitmaps. A stage after a sparse conv (LeNet1998's C3) lists each map's input maps
        (Table I)."""
        convs = conv_layers(self.net)
        name, conv1 = convs[0]
        weight = conv_weight(conv1).detach()
        limit = float(weight.abs().max()) or 1.0  # symmetric about zero: white is 0, as src.visualize draws them
        inputs = {conv: [list(c) for c in m.connections] for conv, m in convs if hasattr(m, "connections")}
        total = len(self.test_y)
        described = {
            "checkpoint": self.info,
            "dataset": self.loaded.dataset,
            "classes": self.classes,
            "input_size": int(self.test_x.shape[-1]),
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "stages": [
                {
                    "name": stage,
                    "shape": shape,
                    "kind": "maps" if len(shape) == 3 else "units",
                    **({"inputs": inputs[stage]} if stage in inputs else {}),
                }
                for (stage, _), shape in zip(self.stages, self.stage_shapes)
            ],
            "filters": {"layer": name, **quantise(weight, -limit, limit)},
            "test_set": {
                "images": total,
                "misclassified": len(self.misclassified),
                "accuracy": 1.0 - len(self.misclassified) / total,
            },
        }
        if self.rbf is not None:
            rubbish = getattr(self.net, "rubbish_logit", None)
            described["rbf"] = {
                "width": WIDTH,
                "height": HEIGHT,
                "limit": self.f6_limit(),
                "rubbish_penalty": None if rubbish is None else -float(rubbish),
                "bitmaps": [as_picture(center) for center in self.rbf.centers],
            }
        return described

    def f6_limit(self) -> float:
        """The largest value F6 can output (its squashing's amplitude, 1.7159): the page's colour scale for F6 and the
        bitmaps is -limit..limit, the same for both, so that a code's distance from a bitmap is what the eye sees."""
        children = list(self.net.classifier.children())
        before = children[children.index(self.rbf) - 1]  # F6's squashing function, which feeds the RBF units
        return float(getattr(before, "amplitude", 1.0))

    # -- predictions
    def forward(self, x: Tensor, digit: np.ndarray) -> dict[str, Any]:
        """One model input (1, 1, side, side) -> the answer the page draws."""
        with self.lock, torch.inference_mode():
            logits, maps, f6 = self.read(x)
        logits = logits.float()
        # LeNet1998's: the paper's p_i, leaving the rubbish its share
        probs = probabilities(self.net, logits)[0].tolist()
        top = probs.index(max(probs))  # the first of equals, as argmax
        answer = {
            "blank": False,
            "prediction": {"index": top, "class": self.classes[top], "probability": probs[top]},
            "probabilities": [round(p, 6) for p in probs],
            "input": quantise(digit, 0.0, 255.0),
            "stages": [
                {"name": stage, **quantise(m[0].reshape(shape))}
                for (stage, _), m, shape in zip(self.stages, maps, self.stage_shapes)
            ],
        }
        if getattr(self.net, "rubbish_logit", None) is not None:
            answer["rubbish"] = round(float(with_rubbish(self.net, logits)[0].softmax(dim=0)[-1]), 6)
        if self.rbf is not None:
            distances = maps[-1][0]  # the RBF units' outputs: y_i = sum_j (x_j - w_ij)^2
            answer["rbf"] = {"f6": as_picture(f6[0]), "distances": [round(float(y), 6) for y in distances]}
        return answer

    def predict_digit(self, digit: np.ndarray) -> dict[str, Any]:
        """A 28x28 MNIST-format image (light on dark, 0..255) -> the answer."""
        x = self.preprocessing(torch.from_numpy(np.ascontiguousarray(digit, dtype=np.float32)).unsqueeze(0))
        return self.forward(x, digit)

    def predict_image(self, body: bytes) -> dict[str, Any]:
        """Image bytes (a canvas PNG, a photo) -> prepared exactly as ``src.predict`` prepares a file -> the answer."""
        try:
            gray = read_grayscale(body, self.max_pixels, name="the request body")
        except ImageError as exc:
            text = str(exc)
            # Too many pixels (read from the header, never decoded) is a size limit, like a too-long body.
            raise ApiError(413 if "decompression bomb" in text else 400, text) from None
        try:
            digit = to_mnist_format(gray)
        except ImageError:  # the only refusal of to_mnist_format: no pixel stands out from the background
            return blank_answer()
        return self.predict_digit(digit)

    def predict_pixels(self, payload: Any) -> dict[str, Any]:
        """``{"pixels": <28x28 array, 0..255>}``: taken as the network's input, as a test image is (not re-centred)."""
        expected = f'expected {{"pixels": [[...], ...]}}: {MNIST_SIDE}x{MNIST_SIDE} numbers in 0..255 (light on dark)'
        if not isinstance(payload, dict) or "pixels" not in payload:
            raise ApiError(422, f"the JSON body has no 'pixels'; {expected}")
        rows = payload["pixels"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise ApiError(422, f"pixels: not a list of rows; {expected}")
        if len({len(row) for row in rows}) > 1:
            raise ApiError(422, f"pixels: rows of different lengths; {expected}")
        shape = f"{len(rows)}x{len(rows[0]) if rows else 0}"
        if shape != f"{MNIST_SIDE}x{MNIST_SIDE}":
            raise ApiError(422, f"pixels: shape {shape}; {expected}")
        for value in (v for row in rows for v in row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ApiError(422, f"pixels: {json.dumps(value)} is not a number; {expected}")
        arr = np.asarray(rows, dtype=np.float64)
        bad_mask = ~np.isfinite(arr) | (arr < 0) | (arr > 255)
        if bad_mask.any():
            row, col = (int(i) for i in np.argwhere(bad_mask)[0])
            raise ApiError(
                422, f"pixels: {float(arr[row, col])!r} at row {row}, column {col} is outside 0..255; {expected}"
            )
        if float(arr.max() - arr.min()) < MIN_CONTRAST:  # as to_mnist_format decides that nothing is drawn
            return blank_answer()
        return self.predict_digit(arr)

    def random_test_image(self, misclassified: bool = False) -> dict[str, Any]:
        """A random test image (or one the model gets wrong) with its true label, run as the evaluation runs it."""
        pool = self.misclassified if misclassified else range(len(self.test_y))
        if not pool:
            raise ApiError(404, "the model classifies every test image correctly: no misclassified image to show")
        index = self.random.choice(pool)
        label = int(self.test_y[index])
        answer = self.forward(self.test_x[index : index + 1], self.test_pixels[index])
        return {"index": index, "label": label, "true_class": self.classes[label], **answer}


def as_picture(code: Tensor) -> list[list[float]]:
    """84 values (an F6 code, a class's bitmap) as the 7x12 picture they are read from, row by row: 12 rows of 7."""
    return [[round(float(v), 6) for v in row] for row in code.reshape(HEIGHT, WIDTH)]


def blank_answer() -> dict[str, Any]:
    return {"blank": True, "message": BLANK}
