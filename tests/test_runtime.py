"""reuse_cpu_memory: freed CPU memory is kept for reuse, so training steps stop page-faulting activations in anew."""

import json
import platform
import subprocess
import sys

import pytest

from tests.helpers import DATA_DIR, ROOT

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt needs Linux with glibc")

# Each script composes the run's config as src.train does, applies it with configure_runtime and prints minor page
# faults (pages the kernel had to map in) as JSON.
SETUP = """
import json, resource, statistics, sys
import torch
from hydra import compose, initialize_config_dir
from src.config import CONFIG_DIR
from src.runtime import configure_runtime

with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
    cfg = compose("train", overrides=sys.argv[1:])
configure_runtime(cfg)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
"""
REALLOCATE = SETUP + """
def step():  # three 8 MiB blocks, written in full and freed, as a step's activations are
    blocks = [torch.ones(2 * 2**20) for _ in range(3)]
for _ in range(3):
    step()
before = faults()
for _ in range(3):
    step()
print(json.dumps(faults() - before))
"""
TRAINING_STEPS = SETUP + """
import torch.nn.functional as F
from omegaconf import OmegaConf
from src.data import MNISTDataModule
from src.models import lenet5_from_config

dm = MNISTDataModule(data_dir=cfg.paths.data_dir)
dm.setup()
net = lenet5_from_config(OmegaConf.to_container(cfg.model))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
per_step = []
for i, (x, y) in enumerate(dm.train_dataloader()):
    before = faults()
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    per_step.append(faults() - before)
    if i == 40:
        break
print(json.dumps(statistics.median(per_step[10:])))
"""


def page_faults(script: str, reuse: bool) -> float:
    overrides = [f"reuse_cpu_memory={str(reuse).lower()}", f"paths.data_dir={DATA_DIR}"]
    result = subprocess.run([sys.executable, "-c", script, *overrides], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_reused_without_new_pages():
    # 8 MiB = 2,048 pages of 4 KiB. By default glibc hands the freed top of its heap back to the kernel once it
    # exceeds twice the largest block freed so far, so every repetition maps (page-faults) fresh pages again.
    assert page_faults(REALLOCATE, reuse=False) > 6000
    assert page_faults(REALLOCATE, reuse=True) < 100


def test_training_steps_on_mnist_do_not_page_fault_with_reuse():
    # A batch-256 LeNet-5 step allocates ~5 MiB activations; the median step after warm-up maps no new pages.
    assert page_faults(TRAINING_STEPS, reuse=True) < 20
