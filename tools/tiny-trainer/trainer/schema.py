"""The trainer's config schema: Hydra rejects any key that is not declared here."""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    hidden: int = MISSING
    layers: int = 1


@dataclass
class OptimConfig:
    learning_rate: float = 0.1
    epochs: int = 20
    noise: float = 0.002  # how much each epoch's step varies with the seed


@dataclass
class TrainConfig:
    model: ModelConfig = MISSING
    params: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    dataset: str = "toy-sine"


def register() -> None:
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
