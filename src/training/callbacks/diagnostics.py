"""Why isn't it training? Per-layer gradient norms, activation statistics and histograms of weights and gradients,
written to the run's loggers every N optimizer steps (``callbacks.diagnostics.every_n_steps``; 0, the default, is off):
the scalars to every logger, the histograms to TensorBoard and W&B (src.training.trackers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm, rank_zero_only
from torch import Tensor, nn

from src.core.runs import GRAD_NORM_TAG
from src.core.settings import Rule, check, integer
from src.training.trackers import keeps_histograms, log_histograms, log_scalars

DIAGNOSTICS = ("grad_norm", "activations", "histograms")
DIAGNOSTICS_RULES = [  # checked by src.train before any work, and by the callback itself
    integer("callbacks.diagnostics.every_n_steps", 0, note="0: off"),
    Rule(
        "callbacks.diagnostics.checks",
        lambda v: all(c in DIAGNOSTICS for c in v),
        f"each must be one of {', '.join(DIAGNOSTICS)}",
    ),
]
# An output this close to a bound has a derivative under a fifth of the activation's largest (sigmoid: 0.0475 of
# 0.25; tanh: 0.0975 of 1): a unit sitting there passes almost no gradient back.
SATURATED = {nn.Sigmoid: (0.05, 0.95), nn.Tanh: (-0.95, 0.95)}
ACTIVATION_TYPES = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.GELU)


def layer_names(net: nn.Module) -> dict[str, str]:
    """Readable names for a network's modules, by their place in it: conv1, conv2, fc1, ... for the weighted layers;
    ``<layer>.bn`` and ``<layer>.act`` for the batch norm and the activation that follow one."""
    names, counts, last = {}, {"conv": 0, "fc": 0}, "input"
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            kind = "conv" if isinstance(module, nn.Conv2d) else "fc"
            counts[kind] += 1
            last = names[name] = f"{kind}{counts[kind]}"
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            names[name] = f"{last}.bn"
        elif isinstance(module, ACTIVATION_TYPES):
            names[name] = f"{last}.act"
    return names


def activation_statistics(module: nn.Module, output: Tensor) -> dict[str, float]:
    """mean and std of an activation's output over a batch; for sigmoid and tanh the fraction of outputs saturated
    (see SATURATED); for ReLU the fraction of units (each output element but the batch dimension) that are 0 for
    every example of the batch: dead for this batch, passing no gradient."""
    y = output.detach().float()
    stats = {"mean": y.mean().item(), "std": y.std().item()}
    if bounds := SATURATED.get(type(module)):
        low, high = bounds
        stats["saturated"] = ((y < low) | (y > high)).float().mean().item()
    if isinstance(module, nn.ReLU):
        stats["dead"] = (y == 0).all(dim=0).float().mean().item()
    return stats


class TrainingDiagnostics(L.Callback):
    """Every ``every_n_steps`` optimizer steps, per layer, under ``diagnostics/`` in the run's loggers:
    ``grad_norm``: each parameter's gradient L2 norm and the total (Lightning's ``grad_norm``);
    ``activations``: each activation's mean, std and fraction saturated (sigmoid, tanh) or dead (ReLU) on that
    step's training batch; ``histograms``: each parameter's weights and gradients.
    """

    def __init__(self, every_n_steps: int = 0, checks: Sequence[str] = DIAGNOSTICS) -> None:
        check(
            {"callbacks": {"diagnostics": {"every_n_steps": every_n_steps, "checks": list(checks)}}}, DIAGNOSTICS_RULES
        )
        self.every_n_steps = every_n_steps
        self.checks = list(checks)
        self._hooks: list[Any] = []
        self._recording = False
        self._activations: dict[str, float] = {}  # this step's, sent when the batch ends
        self._step = 0

    def _due(self, trainer: L.Trainer) -> bool:
        return self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps <= 0 or "activations" not in self.checks:
            return
        names = layer_names(pl_module.net)
        for name, module in pl_module.net.named_modules():
            if isinstance(module, ACTIVATION_TYPES):
                self._hooks.append(module.register_forward_hook(self._recorder(trainer, names[name])))

    def _recorder(self, trainer: L.Trainer, layer: str) -> Any:
        def record(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if self._recording and module.training:
                for stat, value in activation_statistics(module, output).items():
                    self._activations[f"diagnostics/activations/{layer}/{stat}"] = value

        return record

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._recording = bool(self._hooks) and self._due(trainer)
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._recording = False
        log_scalars(trainer, self._activations, self._step)  # the batch's layers at once
        self._activations = {}

    @rank_zero_only
    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._due(trainer):
            return
        names = layer_names(pl_module.net)
        parameters = [  # (full name, readable name: conv1.weight, fc2.bn.bias, ..., parameter)
            (full, f"{names.get(module, module)}.{kind}", p)
            for full, p in pl_module.net.named_parameters()
            for module, kind in [full.rsplit(".", 1)]
        ]
        step = trainer.global_step
        norms = grad_norm(pl_module.net, norm_type=2) if "grad_norm" in self.checks else {}
        values = {
            name: norms[f"grad_2.0_norm/{full}"].item()
            for full, name, _ in parameters
            if f"grad_2.0_norm/{full}" in norms
        }
        if "grad_2.0_norm_total" in norms:
            values["total"] = norms["grad_2.0_norm_total"].item()
        log_scalars(trainer, {f"{GRAD_NORM_TAG}{name}": value for name, value in values.items()}, step)
        if "histograms" in self.checks and keeps_histograms(trainer):  # each tensor copied to the CPU
            histograms = {f"diagnostics/weights/{name}": p.detach().float().cpu() for _, name, p in parameters}
            for _, name, p in parameters:
                if p.grad is not None:
                    histograms[f"diagnostics/gradients/{name}"] = p.grad.detach().float().cpu()
            log_histograms(trainer, histograms, step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
