"""Entry point: ``python -m classify.main model=centroid dataset=moons test_size=0.3``."""

from __future__ import annotations

import json
import logging
import os
import random

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def train_test_split(points, labels, test_size: float, rng: random.Random):
    """Shuffle, then hold out ``round(test_size * n)`` samples (at least one on each side)."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    order = list(range(len(points)))
    rng.shuffle(order)
    n_test = min(max(1, round(test_size * len(points))), len(points) - 1)
    test, train = order[:n_test], order[n_test:]
    return (
        [points[i] for i in train],
        [labels[i] for i in train],
        [points[i] for i in test],
        [labels[i] for i in test],
    )


def accuracy(truth: list[int], predicted: list[int]) -> float:
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)


@hydra.main(version_base="1.3", config_path="conf", config_name="main")
def main(cfg: DictConfig) -> float:
    choices = HydraConfig.get().runtime.choices
    log.info("model=%s dataset=%s", choices.get("model"), choices.get("dataset"))
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    rng = random.Random(cfg.seed)
    dataset = instantiate(cfg.dataset)
    model = instantiate(cfg.model)
    points, labels = dataset.generate(rng)
    x_train, y_train, x_test, y_test = train_test_split(points, labels, cfg.test_size, rng)
    log.info("%d train / %d test samples", len(x_train), len(x_test))
    model.fit(x_train, y_train, rng)
    train_acc = accuracy(y_train, model.predict(x_train))
    test_acc = accuracy(y_test, model.predict(x_test))
    log.info("train accuracy=%.4f test accuracy=%.4f", train_acc, test_acc)
    metrics = {
        "accuracy": round(test_acc, 4),
        "train_accuracy": round(train_acc, 4),
        "n_test": len(x_test),
        "n_train": len(x_train),
    }
    path = os.path.join(HydraConfig.get().runtime.output_dir, "metrics.json")
    with open(path, "w") as handle:
        json.dump(metrics, handle)
    log.info("metrics written to %s", path)
    return test_acc


if __name__ == "__main__":
    main()
