"""The Lightning wrapper: loss, metrics, logging, each epoch's history, optimizer and scheduler around a plain
LeNet-5."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from src.core.errors import ConfigError
from src.models import outputs
from src.models.networks import build_network
from src.training.adversarial import adversarial_batch
from src.training.callbacks.curvature import SDLMCurvature
from src.training.muon import Muon
from src.training.sdlm import is_sdlm

STAGES = ("train", "val", "test")


class LitLeNet5(L.LightningModule):
    """LeNet-5 classifier.

    Its arguments are plain dicts (the ``model``, ``optimizer`` and ``scheduler`` config groups), saved as
    hyperparameters, so a checkpoint rebuilds the run's model on its own and loads with ``weights_only=True``.
    After testing, ``test_confusion_matrix`` (true class by row, predicted by column) and ``test_class_acc`` hold the
    whole test set's counts, summed over every DDP process by torchmetrics. ``per_pattern_updates``: one optimizer step
    per training image, taken in turn through each batch (the stochastic updates LeNet-5 was trained with, at the cost
    of Lightning's per-batch work paid once per batch rather than once per image: docs/lecun1998.md has the timings). ``history`` holds each training epoch's
    loss and accuracy, train and validation (``history.json``); it is kept in checkpoints, so a resumed run has the
    epochs before its stop.
    """

    def __init__(
        self,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        compile: bool = False,
        adversarial: dict[str, Any] | None = None,
        per_pattern_updates: bool = False,
    ) -> None:
        super().__init__()
        self.automatic_optimization = not per_pattern_updates
        # In the checkpoint (how compile sped a run up is not part of its model); the loggers get the recipe's keys as
        # typed instead of these arguments (callbacks.hparams_session, src.training.trackers)
        self.save_hyperparameters(ignore=["compile"], logger=False)
        self.net = build_network(model)
        num_classes = self.net.num_classes
        self.example_input_array = torch.zeros(1, self.net.in_channels, self.net.input_size, self.net.input_size)
        if compile:
            self.net.compile()  # in place: state_dict keys stay those of the plain model
        # Metrics accumulate on the device and are read once per epoch: no per-step host sync.
        # validate_args/nan_strategy checks would each force a sync per update, so they are off.
        self.metrics = torch.nn.ModuleDict()
        for s in STAGES:  # keys like "train_acc": a plain "train" would clash with nn.Module.train
            self.metrics[f"{s}_acc"] = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
            self.metrics[f"{s}_loss"] = MeanMetric(nan_strategy="disable")
        self.test_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.test_per_class = MulticlassAccuracy(num_classes, average="none", validate_args=False)
        self.test_confusion_matrix: Tensor | None = None
        self.test_class_acc: Tensor | None = None
        self.val_acc_best = MaxMetric(nan_strategy="disable")
        self.val_acc_best.persistent(True)  # kept in checkpoints so a resumed run remembers its best
        self.history: list[dict[str, float]] = []
        self._last_validation: dict[str, float] = {}  # this epoch's val/loss and val/acc, for its history row

    @classmethod
    def from_config(cls, cfg: DictConfig) -> LitLeNet5:
        """The module for a composed run config (its model, optimizer and scheduler groups, label smoothing)."""

        def plain(key: str) -> Any:  # checkpoints must hold plain containers, not OmegaConf nodes
            node = OmegaConf.select(cfg, key)
            return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

        return cls(
            model=plain("model"),
            optimizer=plain("optimizer"),
            scheduler=plain("scheduler"),
            label_smoothing=cfg.get("label_smoothing", 0.0),
            compile=bool(cfg.get("compile", False)),
            adversarial=plain("adversarial"),
            per_pattern_updates=bool(cfg.get("per_pattern_updates", False)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _loss(self, logits: Tensor, y: Tensor, stage: str) -> Tensor:
        # Cross-entropy, or LeNet1998's MAP criterion (src.models.outputs). Label smoothing shapes the training target
        # only: validation and test report the plain loss.
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        return outputs.loss(self.net, logits, y, label_smoothing=smoothing)

    def _record(self, logits: Tensor, y: Tensor, loss: Tensor, stage: str) -> None:
        self.metrics[f"{stage}_acc"].update(logits.detach(), y)
        # A device-side weight: a Python number would be copied to the device (a sync) on every step.
        self.metrics[f"{stage}_loss"].update(loss.detach(), weight=torch.full_like(loss, y.shape[0]).detach())

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y, stage)
        self._record(logits, y, loss, stage)
        return loss, logits

    def _pattern_by_pattern(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """One update per image of the batch, in turn; the batch's metrics read each image's output before its own
        update, as a batch's do before the batch's update."""
        x, y = batch
        optimizer = self.optimizers()
        losses, logits = [], []
        for i in range(y.shape[0]):
            pattern_logits = self(x[i : i + 1])
            loss = self._loss(pattern_logits, y[i : i + 1], "train")
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            losses.append(loss.detach())
            logits.append(pattern_logits.detach())
        loss = torch.stack(losses).mean()
        self._record(torch.cat(logits), y, loss, "train")
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if (settings := self.hparams.adversarial or {}).get("epsilon", 0) > 0:
            preprocessing = self.trainer.datamodule.preprocessing
            batch = (adversarial_batch(self.net, *batch, preprocessing, settings), batch[1])
        if self.automatic_optimization:
            loss, _ = self._step(batch, "train")
        else:
            loss = self._pattern_by_pattern(batch)
        # Only on the steps Lightning writes to the loggers (its own rule: every trainer.log_every_n_steps batches,
        # each one optimizer step unless per_pattern_updates): each self.log call costs Lightning's bookkeeping even
        # where nothing is written (docs/speed.md).
        batches = self.trainer.global_step if self.automatic_optimization else batch_idx
        if self.trainer.log_every_n_steps and (batches + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        # The test reads the weights in float32, as src.eval, src.predict and the exports do, whatever precision
        # trained them: under a bf16 recipe's autocast an image near a boundary can change its answer, and the
        # logged test/acc would then differ from what every other tool reports for the same checkpoint.
        with torch.autocast(self.device.type, enabled=False):
            _, logits = self._step(batch, "test")
        self.test_confusion.update(logits.detach(), batch[1])
        self.test_per_class.update(logits.detach(), batch[1])
        return {"logits": logits.detach()}  # for callbacks (confusion matrix, worst-misclassified images)

    def _log_epoch(self, stage: str) -> dict[str, Tensor]:
        values = {}
        for name in ("acc", "loss"):
            metric = self.metrics[f"{stage}_{name}"]
            values[f"{stage}/{name}"] = metric.compute()
            metric.reset()
        return values

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:  # Lightning steps the schedules itself only when it steps the optimizer
            for config in self.trainer.lr_scheduler_configs:
                config.scheduler.step()
        values = self._log_epoch("train")
        self.log("train/acc", values["train/acc"], prog_bar=True)
        self.log("train/loss_epoch", values["train/loss"])
        row = self._history_row({k: float(v) for k, v in values.items()})
        if self.history and self.history[-1]["epoch"] == row["epoch"]:  # the row a mid-epoch checkpoint saved
            self.history[-1] = row
        else:
            self.history.append(row)
        self._last_validation = {}

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val")
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(values["val/acc"])  # the sanity check's batches never count
            self._last_validation = {k: float(v) for k, v in values.items()}  # a sync once a validation, not a step
            values["val/acc_best"] = self.val_acc_best.compute()
        self.log_dict(values, prog_bar=True)

    def _history_row(self, train: dict[str, float]) -> dict[str, float]:
        return {"epoch": self.trainer.current_epoch, "step": self.trainer.global_step, **train, **self._last_validation}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        history = list(self.history)
        if self.trainer.validating and self._last_validation and self.metrics["train_acc"].update_count:
            # Saved at the end of a validation, before this epoch's on_train_epoch_end: a run resumed from here may
            # never run that hook for this epoch, so the row is saved now, with the epoch's train metrics so far.
            train = {f"train/{n}": float(self.metrics[f"train_{n}"].compute()) for n in ("loss", "acc")}
            history = [row for row in history if row["epoch"] < self.trainer.current_epoch]
            history.append(self._history_row(train))
        checkpoint["history"] = history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None and self.trainer.state.fn != TrainerFn.FITTING:
            return  # testing the best checkpoint: the run's whole history stays, not the one saved with that epoch
        history = checkpoint.get("history")
        if history is None:  # written before the module kept it: the LearningCurves callback's state held it
            callbacks = checkpoint.get("callbacks") or {}
            history = next((s.get("history", []) for k, s in callbacks.items() if k.startswith("LearningCurves")), [])
        self.history = list(history)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._log_epoch("test"))
        self.test_confusion_matrix, self.test_class_acc = self.test_confusion.compute(), self.test_per_class.compute()
        self.test_confusion.reset()
        self.test_per_class.reset()

    def on_train_start(self) -> None:
        # A resumed run gets its schedule back from the checkpoint, made for that run's length: one-cycle would fail
        # with "Tried to step N times" where the new run goes on longer, cosine would rise again. Say so instead.
        for config in self.trainer.lr_scheduler_configs:
            for key, needed in getattr(self, "_schedule_length", {}).items():
                made_for = getattr(config.scheduler, key, needed)
                if made_for != needed:
                    unit = "steps" if key == "total_steps" else "epochs"
                    raise ConfigError(
                        f"The checkpoint's {type(config.scheduler).__name__} schedule was made for {made_for} {unit}; this "
                        f"run would take {needed}. A resumed run keeps its schedule, so it runs as long as the original: "
                        f"resume with the run's own trainer.max_epochs, data.batch_size and trainer.limit_train_batches, "
                        f"or start a new run of the length you want."
                    )

    def configure_callbacks(self) -> list[L.Callback]:
        # SDLM divides by a curvature estimated before each training pass: the callback comes with the optimizer, by
        # class (as Muon's parameter groups below), so that a subclass of SDLM gets it too. Only to fit: attached again
        # for the test after a fit, Lightning would report it as replacing a callback passed to the Trainer.
        if self.trainer.state.fn != TrainerFn.FITTING:
            return []
        return [SDLMCurvature()] if is_sdlm(self.hparams.optimizer["_target_"]) else []

    def configure_optimizers(self) -> Any:
        optimizer_fn = instantiate(self.hparams.optimizer)
        params: Any = self.parameters()
        if issubclass(optimizer_fn.func, Muon):  # Muon orthogonalises hidden layers' matrices, not the output layer's
            output = list(self.net.output_layer.parameters())  # none for LeNet1998's fixed RBF units
            hidden = [p for p in self.parameters() if all(p is not q for q in output)]
            params = [{"params": hidden}] + ([{"params": output, "orthogonalize": False}] if output else [])
        optimizer = optimizer_fn(params)
        if not self.hparams.scheduler:
            return optimizer
        options = dict(self.hparams.scheduler)
        interval, monitor = options.pop("interval", "epoch"), options.pop("monitor", None)
        # Schedules that need the run's length get it in their own unit (steps or epochs) when left null.
        length = self.trainer.estimated_stepping_batches if interval == "step" else self.trainer.max_epochs
        scheduler_fn = instantiate(options)
        params = inspect.signature(scheduler_fn.func).parameters
        extra = {k: int(length) for k in ("total_steps", "T_max") if k in params and options.get(k) is None}
        self._schedule_length = extra  # checked against a resumed checkpoint's schedule in on_train_start
        scheduler = scheduler_fn(optimizer, **extra)
        config = {"scheduler": scheduler, "interval": interval}
        if monitor:
            config["monitor"] = monitor
        return {"optimizer": optimizer, "lr_scheduler": config}
