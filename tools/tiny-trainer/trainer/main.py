"""A toy 'training' run: deterministic, fast, and strict about its config."""

import json
import math
import random

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from .schema import TrainConfig, register

register()


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: TrainConfig) -> None:
    job = HydraConfig.get().job.name
    print(f"[{job}] model={cfg.model.name} hidden={cfg.model.hidden} layers={cfg.model.layers}")
    print(f"[{job}] lr={cfg.params.learning_rate} epochs={cfg.params.epochs} seed={cfg.seed}")
    rng = random.Random(cfg.seed)
    capacity = cfg.model.hidden * cfg.model.layers
    loss = 1.0
    for epoch in range(cfg.params.epochs):
        step = cfg.params.learning_rate * (1 - loss / (2 + math.log(capacity)))
        loss = max(0.01, loss - step + rng.uniform(-cfg.params.noise, cfg.params.noise))
        print(f"epoch {epoch + 1}/{cfg.params.epochs} loss={loss:.4f}")
    accuracy = round(1.0 - loss / 2, 4)
    metrics = {"loss": round(loss, 4), "accuracy": accuracy, "capacity": capacity}
    with open(f"{HydraConfig.get().runtime.output_dir}/metrics.json", "w") as handle:
        json.dump(metrics, handle)
    print(f"[{job}] final loss={metrics['loss']} accuracy={accuracy}")
    print(OmegaConf.to_yaml(cfg))


if __name__ == "__main__":
    main()
