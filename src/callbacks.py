"""What Lightning does not log by itself: small callbacks, and its TensorBoard logger with the graph written once."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class HParamsSession(L.Callback):
    """Registers the run in TensorBoard's HPARAMS tab: the hyperparameters that define its recipe against the metrics
    that matter.

    ``hparams`` maps each column, named as a user types it (``optimizer.lr``), to this run's value; the config
    (conf/callbacks/default.yaml) fills them in. Every run declares the same columns with the same types, so a sweep's
    table has them all whichever run TensorBoard reads the columns from (it picks one run's declaration); a value a
    run does not have (momentum under Adam) stays blank, and ``types`` gives such a column's type (``bool``,
    ``number`` or ``string``), which that run cannot tell from its value.
    Written with TensorBoard's own hparams protos, which keep booleans as booleans (torch's ``hparams()`` stores them
    as 1.0). Lightning's own hparams logging would link only ``hp_metric``; TensorBoard reads the declared metrics'
    values from the scalars the run logs anyway, so no placeholder values are written.
    """

    TYPES = {"bool": "DATA_TYPE_BOOL", "number": "DATA_TYPE_FLOAT64", "string": "DATA_TYPE_STRING"}

    def __init__(self, hparams: dict[str, Any], metrics: Sequence[str], types: dict[str, str] | None = None) -> None:
        self.hparams = dict(hparams)
        self.metrics = list(metrics)
        self.types = dict(types or {})
        if bad := {k: v for k, v in self.types.items() if v not in self.TYPES or k not in self.hparams}:
            raise ValueError(
                f"HParamsSession types {bad}: each must name a column of hparams and be one of {', '.join(self.TYPES)}"
            )

    def column_type(self, name: str, value: Any) -> str:
        """The column's TensorBoard data type: declared in ``types``, else that of this run's value."""
        if name in self.types:
            return self.TYPES[self.types[name]]
        kind = {bool: "bool", int: "number", float: "number", str: "string"}.get(type(value))
        return self.TYPES[kind] if kind else "DATA_TYPE_UNSET"

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2

        values = {
            k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in self.hparams.items() if v is not None
        }
        experiment = api_pb2.Experiment(
            hparam_infos=[api_pb2.HParamInfo(name=k, type=self.column_type(k, values.get(k))) for k in self.hparams],
            metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in self.metrics],
        )
        config = Summary()
        config.value.add(
            tag=metadata.EXPERIMENT_TAG,
            tensor=metadata.NULL_TENSOR,
            metadata=metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        )
        for logger in trainer.loggers:
            if isinstance(logger, LightningTensorBoardLogger):
                writer = logger.experiment._get_file_writer()
                # The trial (TensorBoard groups sessions by it) is the run folder with its parent: the HPARAMS rows read
                # like the Scalars legend, and two sweeps' same-named jobs stay apart under one --logdir.
                trial = "/".join(Path(logger.log_dir).resolve().parts[-2:])
                for summary in (config, summary_v2.hparams_pb(values, trial_id=trial)):
                    writer.add_summary(summary)


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, writing the model graph once per run.

    Lightning logs the graph at the start of every stage (fit, then test), and TensorBoard then warns "Found more
    than one graph event per run". The graph is traced with torch.jit.trace, which torch 2.14 deprecates with a
    FutureWarning on every call; TensorBoard has no other graph writer, so that one warning is silenced while the
    graph is traced, and nowhere else (src.export's TorchScript export still shows it).
    """

    def log_graph(self, model: L.LightningModule, input_array: torch.Tensor | None = None) -> None:
        if getattr(self, "_graph_logged", False):
            return
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning
            )
            super().log_graph(model, input_array)
        self._graph_logged = True


class EpochThroughput(L.Callback):
    """Logs ``time/epoch_s`` and ``time/images_per_s`` for each training epoch."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run resumed mid-epoch skips that epoch's on_train_epoch_start: time it from here.
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += len(batch[1])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        pl_module.log_dict({"time/epoch_s": seconds, "time/images_per_s": self._images / max(seconds, 1e-9)})


class TimeToAccuracy(L.Callback):
    """Times training until test accuracy first reaches ``target``, measured at each validation.

    The clock runs only while training batches run (validation and these test evaluations are excluded). Test
    accuracy here is a stopwatch, never used to pick a model. Logs ``tta/test_acc`` and ``tta/train_s`` at each
    check and ``tta/seconds_to_target`` once the target is reached.
    """

    def __init__(self, target: float = 0.99, stop_at_target: bool = False) -> None:
        self.target, self.stop_at_target = target, stop_at_target
        self.train_seconds, self.seconds_to_target = 0.0, None

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # (Re)starts at an epoch's first batch and after a validation within the epoch (trainer.val_check_interval < 1).
        if getattr(self, "_start", None) is None:
            self._sync(pl_module)
            self._start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and getattr(self, "_start", None) is not None:
            self._sync(pl_module)
            self.train_seconds += time.perf_counter() - self._start
            self._start = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        correct = total = 0
        with torch.no_grad():
            for x, y in trainer.datamodule.test_dataloader():
                x, y = x.to(pl_module.device), y.to(pl_module.device)
                correct += (pl_module(x).argmax(1) == y).sum()
                total += len(y)
        acc = float(correct) / total
        values = {"tta/test_acc": acc, "tta/train_s": self.train_seconds}
        if self.seconds_to_target is None and acc >= self.target:
            self.seconds_to_target = self.train_seconds
            if self.stop_at_target:
                trainer.should_stop = True
        if self.seconds_to_target is not None:
            values["tta/seconds_to_target"] = self.seconds_to_target
        pl_module.log_dict(values)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # With validation off for an epoch the clock stops here instead.
        self.on_validation_epoch_start(trainer, pl_module)


class LearningCurves(L.Callback):
    """Keeps each epoch's metrics; at the end writes ``history.json`` and ``learning_curves.png`` to the run folder."""

    KEYS = {"train/loss": "train/loss_epoch", "train/acc": "train/acc", "val/loss": "val/loss", "val/acc": "val/acc"}

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.history: list[dict[str, Any]] = []
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks' epoch-end hooks run before the LightningModule's, which computes train/acc: the row is
        # completed at the next epoch's start (or the end of training), when every metric of the epoch is in.
        self._pending = {"epoch": trainer.current_epoch, "step": trainer.global_step}

    def _flush(self, trainer: L.Trainer) -> None:
        row, self._pending = getattr(self, "_pending", None), None
        if row is not None:
            metrics = trainer.callback_metrics
            row.update({name: float(metrics[key]) for name, key in self.KEYS.items() if key in metrics})
            self.history.append(row)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def state_dict(self) -> dict[str, Any]:
        # A resumed run keeps the curves of the epochs before the stop. Checkpoints are written after validation,
        # before the epoch's train metrics exist: the epoch being saved goes in with its validation metrics.
        history, trainer, row = list(self.history), self._trainer, getattr(self, "_pending", None)
        if (
            row is None
            and trainer is not None
            and trainer.validating
            and (not history or history[-1]["epoch"] < trainer.current_epoch)
        ):
            row = {"epoch": trainer.current_epoch, "step": trainer.global_step}  # saved at the end of validation
        if row is not None and trainer is not None:
            metrics = trainer.callback_metrics
            history.append(
                {**row, **{n: float(metrics[k]) for n, k in self.KEYS.items() if k.startswith("val/") and k in metrics}}
            )
        return {"history": history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.history:
            return
        from src.plots import learning_curves, save

        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        save(learning_curves(self.history), self.output_dir / "learning_curves.png")


class TensorBoardImages(L.Callback):
    """Images in TensorBoard: sample training images with class names at the start; after testing, the
    test-set confusion matrix and the worst-misclassified test images (predicted vs true)."""

    def __init__(self, samples: int = 32, worst: int = 24) -> None:
        self.samples, self.worst = samples, worst

    def _writers(self, trainer: L.Trainer) -> list[Any]:
        return [lg.experiment for lg in trainer.loggers if isinstance(lg, LightningTensorBoardLogger)]

    def _classes(self, trainer: L.Trainer) -> list[str]:
        return list(getattr(trainer.datamodule, "classes", [str(i) for i in range(10)]))

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = self._writers(trainer)
        if not writers or not hasattr(trainer.datamodule, "_splits"):
            return
        from src.plots import image_grid

        images, labels = trainer.datamodule._splits["train"]
        classes = self._classes(trainer)
        fig = image_grid(images[: self.samples], [classes[i] for i in labels[: self.samples].tolist()])
        for writer in writers:
            writer.add_figure("images/train_samples", fig, global_step=0, close=False)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._matrix = torch.zeros(
            pl_module.net.classifier[-1].out_features,
            pl_module.net.classifier[-1].out_features,
            dtype=torch.long,
            device=pl_module.device,
        )
        self._wrong: list[tuple[torch.Tensor, ...]] = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        x, y = batch
        logits = outputs["logits"]
        pred = logits.argmax(1)
        n = self._matrix.shape[0]
        self._matrix += torch.bincount(y * n + pred, minlength=n * n).view(n, n)
        wrong = pred != y
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        # keep only this batch's worst few: the images needed at the end stay small
        top = torch.topk(torch.where(wrong, loss, -1.0), min(self.worst, len(y)))
        keep = top.indices[top.values >= 0]
        self._wrong.append((top.values[top.values >= 0], x[keep], y[keep], pred[keep]))

    @rank_zero_only
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = self._writers(trainer)
        if not writers:
            return
        from src.plots import confusion_matrix_figure, image_grid

        classes = self._classes(trainer)
        step = trainer.global_step
        figures = {"images/confusion_matrix": confusion_matrix_figure(self._matrix, classes)}
        if self._wrong and sum(len(w[0]) for w in self._wrong):
            loss, x, y, pred = (torch.cat(parts) for parts in zip(*self._wrong))
            order = loss.argsort(descending=True)[: self.worst]
            titles = [f"{classes[p]}\n(true: {classes[t]})" for p, t in zip(pred[order].tolist(), y[order].tolist())]
            figures["images/worst_misclassified"] = image_grid(x[order], titles, title_colors=["red"] * len(order))
        for tag, fig in figures.items():
            for writer in writers:
                writer.add_figure(tag, fig, global_step=step, close=False)


class FirstLayerFilters(L.Callback):
    """The first conv layer's filters in TensorBoard: at the start of training and after every ``every_n_epochs``-th
    epoch, so the step slider shows them form from their random start. Images tab: ``filters/conv1``, the kernels in
    ``src.visualize``'s layout and colours (one scale, symmetric about zero: white 0, red positive, blue negative);
    Scalars tab: ``filters/conv1_max_abs``, that scale's limit. Drawn without matplotlib, in a few milliseconds an
    epoch: on by default because that costs nothing measurable (docs/visualize.md)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        if not isinstance(every_n_epochs, int) or isinstance(every_n_epochs, bool) or every_n_epochs < 1:
            raise ValueError(
                f"callbacks.first_layer_filters.every_n_epochs={every_n_epochs!r}: must be an integer >= 1"
            )
        self.every_n_epochs = every_n_epochs

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, LightningTensorBoardLogger)]
        if not writers:
            return
        from src.plots import filter_mosaic

        conv = next(m for m in pl_module.net.features if isinstance(m, torch.nn.Conv2d))
        image, limit = filter_mosaic(conv.weight)
        for writer in writers:
            writer.add_image("filters/conv1", image, global_step=trainer.global_step, dataformats="HWC")
            writer.add_scalar("filters/conv1_max_abs", limit, global_step=trainer.global_step)

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log(trainer, pl_module)
