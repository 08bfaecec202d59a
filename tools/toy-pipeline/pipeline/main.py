"""Entry point: ``python -m pipeline.main stage=train stage.data=/path/dataset.json``."""

from __future__ import annotations

import json
import logging
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="main")
def main(cfg: DictConfig) -> None:
    out = HydraConfig.get().runtime.output_dir
    stage = instantiate(cfg.stage)
    log.info("stage %s", type(stage).__name__)
    metrics = stage.run(out, cfg.seed)
    with open(os.path.join(out, "metrics.json"), "w") as handle:
        json.dump(metrics, handle)
    log.info("metrics %s", metrics)


if __name__ == "__main__":
    main()
