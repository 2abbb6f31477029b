"""SDLM's curvature, re-estimated before each training pass (LeCun et al. 1998, Appendix C: on 500 patterns)."""

from __future__ import annotations

import logging
import time

import lightning as L
import numpy as np
import torch

from src.training.curvature import CURVATURES
from src.training.sdlm import SDLM

log = logging.getLogger(__name__)


class SDLMCurvature(L.Callback):
    """At the start of each training epoch, draws ``optimizer.curvature_patterns`` training patterns (without their
    augmentation, as the data set holds them), computes each parameter's h_kk on them and hands it to every SDLM
    optimizer. ``LitLeNet5.configure_callbacks`` attaches it whenever the optimizer is SDLM; with any other, it does
    nothing. The patterns are a pure function of (data.seed, epoch): a resumed run draws the same ones."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizers = [o for o in trainer.optimizers if isinstance(o, SDLM)]
        if not optimizers:
            return
        sdlm, datamodule = optimizers[0], trainer.datamodule
        images, labels = datamodule.split("train")
        count = min(sdlm.curvature_patterns, len(labels))
        state = np.random.SeedSequence([datamodule.hparams.seed, trainer.current_epoch, 1998]).generate_state(1)[0]
        chosen = torch.randperm(len(labels), generator=torch.Generator().manual_seed(int(state)))[:count]
        chosen = chosen.to(labels.device)
        inputs = datamodule.preprocessing.normalize_(images[chosen].float())
        start = time.perf_counter()
        curvature = CURVATURES[sdlm.curvature](pl_module.net, inputs, labels[chosen], sdlm.curvature_from)
        for optimizer in optimizers:
            optimizer.set_curvature(curvature)
        mean = torch.cat([h.flatten() for h in curvature.values()]).mean()
        pl_module.log("sdlm/mean_curvature", mean, on_step=False, on_epoch=True)
        elapsed = time.perf_counter() - start
        log.info(
            "SDLM curvature on %d patterns from the %s in %.1f s (mean h_kk %.4g)",
            count,
            sdlm.curvature_from,
            elapsed,
            mean,
        )
