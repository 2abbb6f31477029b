from src.data.datamodule import DATASETS, DataNotFoundError, MNISTDataModule, TensorBatches

__all__ = ["DATASETS", "DataNotFoundError", "MNISTDataModule", "TensorBatches"]
