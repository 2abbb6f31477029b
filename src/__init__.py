"""LeNet-5 on MNIST and Fashion-MNIST with Lightning, Hydra and TensorBoard; entry points run as ``python -m src.<entry>``."""

from src.core.silenced_warnings import silence_library_noise

silence_library_noise()
