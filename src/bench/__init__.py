"""Benchmark: where LeNet-5's training time goes, measured side by side in one run on one machine.

    python -m src.bench                      # CPU, MNIST, batch 256, 4 epochs per variant
    python -m src.bench --accelerator gpu    # the same on a GPU
    python -m src.bench --tiny               # a few batches per variant: checks the plumbing, not speed

Variants (same LeNet-5, SGD lr 0.05 momentum 0.9, batch size and epochs; each epoch = train + validate):
  textbook   plain PyTorch as the tutorials write it: torchvision MNIST, PIL transforms, DataLoader
  raw        plain PyTorch over the tensor-resident data (the lower bound for this model)
  lightning  ``python -m src.train`` as users run it (logging, checkpointing and progress bar on)
plus ``--extra NAME=OVERRIDES`` for more Lightning variants (e.g. ``--extra "bf16=trainer.precision=bf16-mixed"``),
and the time to 99.0% MNIST test accuracy for ``experiment=fast_mnist``. Each variant runs in its own process so
its peak memory is its own. ``paired`` then measures Lightning's cost per training step at three levels (an empty
LightningModule, LitLeNet5, the full src.train pipeline), each in one process where segments of Lightning steps
alternate with segments of raw-loop steps, so that the machine's slow spells cancel out of the ratio.
Results go to ``outputs/bench/<time>/``: results.json, results.md and chart.png.
"""
