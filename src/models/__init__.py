from src.models.lenet5 import ACTIVATIONS, INITS, POOLINGS, LeNet5, lenet5_from_config

__all__ = ["ACTIVATIONS", "INITS", "POOLINGS", "LeNet5", "lenet5_from_config"]
