from src.models.lenet5 import ACTIVATIONS, INITS, POOLINGS, LeNet5
from src.models.lenet1998 import LeNet1998
from src.models.networks import NETWORKS, build_network

__all__ = ["ACTIVATIONS", "INITS", "NETWORKS", "POOLINGS", "LeNet1998", "LeNet5", "build_network"]
