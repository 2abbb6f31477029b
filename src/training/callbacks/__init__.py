"""Every Lightning callback the default config (conf/callbacks/default.yaml) instantiates beside Lightning's own.

``tensorboard``: what TensorBoard shows beyond Lightning's scalars; ``misclassified``: the test images the network
gets most wrong; ``history``: each epoch's metrics and speed; ``safety``: what keeps a run's work safe (RNG state,
divergence, a clean stop); ``diagnostics``: why a run does not train (per-layer gradient norms, activation
statistics, histograms); ``curvature``: SDLM's curvature before each pass (attached by the LightningModule).
"""

from src.training.callbacks.curvature import SDLMCurvature
from src.training.callbacks.diagnostics import TrainingDiagnostics
from src.training.callbacks.history import EpochThroughput, LearningCurves
from src.training.callbacks.misclassified import WorstMisclassified
from src.training.callbacks.safety import DivergenceGuard, ResumableStopCheckpoint, RNGStateCheckpoint
from src.training.callbacks.tensorboard import FirstLayerFilters, HParamsSession, TensorBoardImages

__all__ = [
    "DivergenceGuard",
    "EpochThroughput",
    "FirstLayerFilters",
    "HParamsSession",
    "LearningCurves",
    "RNGStateCheckpoint",
    "SDLMCurvature",
    "ResumableStopCheckpoint",
    "TensorBoardImages",
    "TrainingDiagnostics",
    "WorstMisclassified",
]
