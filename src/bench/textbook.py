"""The tutorials' reference setup: torchvision MNIST, PIL transforms, DataLoader, a LeNet5 and torch's SGD."""

from __future__ import annotations

from typing import Any

import torch

from src.bench.recipe import data_dir


def textbook_loaders(batch_size: int) -> tuple[Any, Any, Any]:
    """The tutorials' pipeline: torchvision dataset + PIL transforms + DataLoader (same split as src.data)."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [transforms.Pad(2), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    train = datasets.MNIST(data_dir(), train=True, transform=transform)
    test = datasets.MNIST(data_dir(), train=False, transform=transform)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    return (
        DataLoader(Subset(train, order[5000:].tolist()), batch_size=batch_size, shuffle=True),
        DataLoader(Subset(train, order[:5000].tolist()), batch_size=batch_size),
        DataLoader(test, batch_size=batch_size),
    )


def textbook_setup(cfg: Any, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, tuple]:
    """Network, optimizer and (train, val, test) loaders as the tutorials write them, with the config's settings."""
    from src.models import LeNet5

    loaders = textbook_loaders(cfg.data.batch_size)
    net = LeNet5(activation=cfg.model.activation, pooling=cfg.model.pooling).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)
    return net, opt, loaders
