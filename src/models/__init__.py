from src.models.lenet5 import ACTIVATIONS, INITS, POOLINGS, LeNet5, build_network

__all__ = ["ACTIVATIONS", "INITS", "POOLINGS", "LeNet5", "build_network"]
