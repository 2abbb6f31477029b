"""The networks a config may name, and the one door through which a saved ``model`` config becomes a network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.core.errors import CheckpointError
from src.core.settings import Rule
from src.models.lenet5 import NETWORK_RULES, LeNet5, network_shape_problems
from src.models.lenet1998 import NETWORK_1998_RULES, LeNet1998

# model._target_ -> the class: conf/model/lenet5.yaml and conf/model/lenet5_1998.yaml
NETWORKS: dict[str, type[nn.Module]] = {"src.models.LeNet5": LeNet5, "src.models.LeNet1998": LeNet1998}


def network_problems(cfg: DictConfig) -> list[str]:
    """The ``model`` group's values checked by the rules of the network it names (src.train, before any work)."""
    target = OmegaConf.select(cfg, "model._target_", default="src.models.LeNet5")
    if target == "src.models.LeNet1998":
        rules, checks = NETWORK_1998_RULES, []
    elif target == "src.models.LeNet5":
        rules, checks = NETWORK_RULES, [network_shape_problems]
    else:
        return [f"model._target_={target!r}: choose one of {', '.join(NETWORKS)} (model=lenet5 or model=lenet5_1998)"]
    problems = [line for rule in rules if isinstance(rule, Rule) and (line := rule.problem(cfg)) is not None]
    return problems + [line for check in checks for line in check(cfg)]


def build_network(model: Mapping[str, Any]) -> nn.Module:
    """The network a saved ``model`` config describes (the copy a checkpoint or a run folder keeps of its model group,
    resolved), built as ``hydra.utils.instantiate`` builds it from a composed config. A ``_target_`` that is not one
    of ``NETWORKS`` is refused, never imported."""
    args = dict(model)
    target = args.pop("_target_", "src.models.LeNet5")
    if target not in NETWORKS:
        raise CheckpointError(f"model._target_={target!r}: this project builds only {', '.join(NETWORKS)}")
    args.pop("compile", None)  # written inside the model group by versions before it became the top-level `compile`
    return NETWORKS[target](**args)
