from src.data.datamodule import MNISTDataModule, TensorBatches
from src.data.datasets import DATASETS

__all__ = ["DATASETS", "MNISTDataModule", "TensorBatches"]
