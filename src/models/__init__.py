from src.models.lenet5 import ACTIVATIONS, INITS, POOLINGS, LeNet5

__all__ = ["ACTIVATIONS", "INITS", "POOLINGS", "LeNet5"]
