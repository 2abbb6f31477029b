"""Callbacks that record what Lightning does not: the recipe's hyperparameters (TensorBoard's HPARAMS tab, MLflow's
params), pictures (sample images, the confusion matrix, the worst errors) and the first layer's filters, to every
logger that can take them (src.training.trackers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from src.core.settings import check, integer
from src.training.callbacks.misclassified import WorstMisclassified
from src.training.trackers import keeps_pictures, log_figure, log_image, log_recipe, log_scalars

TENSORBOARD_RULES = [integer("callbacks.first_layer_filters.every_n_epochs", 1)]  # src.train's, and the callback's


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
        log_recipe(trainer, values)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment._get_file_writer()
                # The trial (TensorBoard groups sessions by it) is the run folder with its parent: the HPARAMS rows read
                # like the Scalars legend, and two sweeps' same-named jobs stay apart under one --logdir.
                trial = "/".join(Path(logger.log_dir).resolve().parts[-2:])
                for summary in (config, summary_v2.hparams_pb(values, trial_id=trial)):
                    writer.add_summary(summary)


class TensorBoardImages(WorstMisclassified):
    """Images in TensorBoard: sample training images with class names at the start; after testing, the test set's
    confusion matrix (the LightningModule's ``test_confusion_matrix``, synced across DDP processes) and the ``worst``
    worst-misclassified test images (predicted vs true) of all processes."""

    def __init__(self, samples: int = 32, worst: int = 24) -> None:
        super().__init__(keep=worst)
        self.samples = samples

    def _classes(self, trainer: L.Trainer) -> list[str]:
        return list(getattr(trainer.datamodule, "classes", [str(i) for i in range(10)]))

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not keeps_pictures(trainer) or not hasattr(trainer.datamodule, "split"):
            return
        from src.core.plots import image_grid

        images, labels = trainer.datamodule.split("train")
        classes = self._classes(trainer)
        fig = image_grid(images[: self.samples], [classes[i] for i in labels[: self.samples].tolist()])
        log_figure(trainer, "images/train_samples", fig, step=0)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not keeps_pictures(trainer):
            return
        from src.core.plots import confusion_matrix_figure, image_grid

        classes = self._classes(trainer)
        figures = {"images/confusion_matrix": confusion_matrix_figure(pl_module.test_confusion_matrix, classes)}
        if self.result is not None and len(self.result.true):
            x, pred, true = self.result.images, self.result.predicted, self.result.true
            titles = [f"{classes[p]}\n(true: {classes[t]})" for p, t in zip(pred.tolist(), true.tolist())]
            figures["images/worst_misclassified"] = image_grid(x, titles, title_colors=["red"] * len(titles))
        for tag, fig in figures.items():
            log_figure(trainer, tag, fig, step=trainer.global_step)


class FirstLayerFilters(L.Callback):
    """The first conv layer's filters in TensorBoard: at the start of training and after every ``every_n_epochs``-th
    epoch, so the step slider shows them form from their random start. Images tab: ``filters/conv1``, the kernels in
    ``src.visualize``'s layout and colours (one scale, symmetric about zero: white 0, red positive, blue negative);
    Scalars tab: ``filters/conv1_max_abs``, that scale's limit. Drawn without matplotlib: on by default because its
    cost is too small to measure (docs/visualize.md)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        check({"callbacks": {"first_layer_filters": {"every_n_epochs": every_n_epochs}}}, TENSORBOARD_RULES)
        self.every_n_epochs = every_n_epochs

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.loggers:
            return
        from src.core.plots import filter_mosaic

        conv = next(m for m in pl_module.net.features if isinstance(m, torch.nn.Conv2d))
        image, limit = filter_mosaic(conv.weight)
        log_image(trainer, "filters/conv1", image, step=trainer.global_step)
        log_scalars(trainer, {"filters/conv1_max_abs": limit}, step=trainer.global_step)

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log(trainer, pl_module)
