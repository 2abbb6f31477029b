"""Export a checkpoint's network: ``python -m src.export ckpt_path=<checkpoint> format=onnx|torchscript``.

The exported model takes ``(batch, 1, S, S)`` normalised images (S = 28 + 2 * the data pad, 32 by default; the batch
size is free) and returns logits.
It is then run on real test images and its outputs compared with PyTorch's; the largest absolute difference is
printed, and a difference above ``atol`` is an error. The files go to the run folder
(outputs/export/<date>/<time>_<pid>): lenet5.onnx or lenet5.pt, and lenet5.json with the preprocessing
(pad, mean, std, class names), which is also embedded in the model file.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from src.core.entry_point import hydra_entry_point
from src.core.errors import ConfigError, ExportCheckError, MissingDependencyError
from src.core.settings import Rule, check, choice, integer, is_number, required
from src.training.checkpoints import load_checkpoint

FORMATS = {"onnx": "lenet5.onnx", "torchscript": "lenet5.pt"}
RULES = [
    choice("format", FORMATS),
    integer("check_images", 1, 10_000, note="the test set's size"),
    integer("opset", 7, 20, note="the opsets torch.onnx's TorchScript-based exporter writes"),
    Rule("atol", lambda v: is_number(v) and v >= 0, "must be a number >= 0"),
    Rule("rtol", lambda v: is_number(v) and v >= 0, "must be a number >= 0"),
]
CHECK_BATCHES = (1, 7)  # besides one batch of all check images: proves the batch dimension is free


def export_onnx(
    net: nn.Module, example: Tensor, path: Path, opset: int, metadata: dict[str, str]
) -> Callable[[Tensor], Tensor]:
    """Write ``path`` with a dynamic batch dimension; return a function running it in onnxruntime."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError(
            f"format=onnx needs the onnx and onnxruntime packages ({exc}): pip install onnx onnxruntime"
        ) from None
    # dynamo=False: the TorchScript-based exporter needs only `onnx`; the default dynamo exporter would also need
    # onnxscript. torch marks it deprecated, hence the silenced DeprecationWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(
                net,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        except torch.onnx.errors.UnsupportedOperatorError as exc:  # an operator newer than the opset asked for
            raise ConfigError(f"opset={opset}: {exc}; a newer opset exports it") from None
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["logits"], {"input": x.numpy()})[0])


def export_torchscript(
    net: nn.Module, example: Tensor, path: Path, metadata: dict[str, str]
) -> Callable[[Tensor], Tensor]:
    """Write ``path`` (traced TorchScript, batch size free); return a function running the reloaded file."""
    # Tracing records the forward pass (no control flow in LeNet-5); torch marks torch.jit as deprecated in favour
    # of torch.export, but a .pt TorchScript file is still what C++ (libtorch) and mobile runtimes load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, example)
        torch.jit.save(traced, str(path), _extra_files=metadata)
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return loaded(x)

    return run


def export(cfg: DictConfig) -> dict[str, float | str]:
    check(cfg, RULES, required("ckpt_path", "python -m src.export ckpt_path=<checkpoint> format=onnx"))
    loaded = load_checkpoint(cfg.ckpt_path)
    net = loaded.net
    in_channels, side = net.in_channels, net.input_size
    example = torch.zeros(1, in_channels, side, side)  # fixed image size; the batch dimension stays dynamic

    # The check images first: a missing data set stops the command before anything is written.
    images, _ = loaded.test_split(cfg.paths.data_dir, int(cfg.check_images))
    out = Path(cfg.paths.output_dir)
    path = out / FORMATS[cfg.format]
    preprocessing = {
        "dataset": loaded.dataset,
        **loaded.preprocessing.state(),
        "classes": loaded.classes,
        "input": f"(batch, {in_channels}, {side}, {side}) float32: (pixels/255 - mean)/std, 28x28 images padded by pad",
        "output": "logits (softmax for probabilities)",
    }
    if (rubbish := getattr(net, "rubbish_logit", None)) is not None:  # LeNet1998: minus its RBF penalties
        preprocessing["output"] = (
            f"-y, minus each class's RBF penalty; probabilities: softmax over the ten and a rubbish class's constant "
            f"{rubbish}, the rubbish class's share left out (LeCun et al. 1998, section II.C)"
        )
        preprocessing["rubbish_logit"] = rubbish
    metadata = {"preprocessing.json": json.dumps(preprocessing)}
    if cfg.format == "onnx":
        run = export_onnx(net, example, path, int(cfg.opset), metadata)
    else:
        run = export_torchscript(net, example, path, metadata)
    (out / "lenet5.json").write_text(json.dumps(preprocessing, indent=2))  # once the model file is written

    max_diff, largest, agree, passed = 0.0, 0.0, 0.0, True
    for size in (*CHECK_BATCHES, len(images)):
        # PyTorch's reference is computed at the same batch size: its own results vary with it at the 1e-6 level.
        with torch.no_grad():
            expected = net(images[:size])
        got = run(images[:size])
        diff = (got - expected).abs()
        max_diff, largest = max(max_diff, float(diff.max())), max(largest, float(expected.abs().max()))
        # torch.testing.assert_close's rule: float32 logits of size ~30 carry rounding noise of ~1e-5 themselves.
        passed &= bool(torch.isclose(got, expected, rtol=cfg.rtol, atol=cfg.atol).all())  # NaN is never close
        agree = float((got.argmax(1) == expected.argmax(1)).float().mean())
    print(f"Exported {cfg.format} to {path} (input (batch, {in_channels}, {side}, {side}), dynamic batch)")
    tolerance = f"{cfg.atol:g} + {cfg.rtol:g} x |logit|"
    print(
        f"Check on {len(images):,} real {loaded.dataset} test images (batches of {', '.join(map(str, CHECK_BATCHES))} "
        f"and {len(images):,}): max abs difference vs PyTorch = {max_diff:.3g} on logits up to {largest:.1f} "
        f"(tolerance {tolerance}): {'passed' if passed else 'FAILED'}; same predicted class for {agree:.2%}"
    )
    if not passed:
        raise ExportCheckError(
            f"the exported {cfg.format} model differs from PyTorch by up to {max_diff:.3g}, more than "
            f"{tolerance}; it was written to {path} but should not be used"
        )
    result = {
        "format": cfg.format,
        "path": str(path),
        "max_abs_diff": max_diff,
        "max_abs_logit": largest,
        "atol": cfg.atol,
        "rtol": cfg.rtol,
        "images": len(images),
    }
    (out / "export_check.json").write_text(json.dumps(result, indent=2))
    return result


main = hydra_entry_point(export, "export")


if __name__ == "__main__":
    main()
