"""Minimal Hydra tool: prints the config it was given, as the ExperimentStash seed promises."""

import json

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    print("🎉 SUCCESS: Hydra integration working!")
    print(f"📝 Message from config: {cfg.get('message', 'No message')}")
    print("✅ Top-level configs integrated successfully!")
    hydra_cfg = HydraConfig.get()
    print(f"   experiment (Hydra job name): {hydra_cfg.job.name}")
    params = cfg.get("params")
    params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
    for key, value in params.items():
        print(f"   {key}: {value}")
    # Tools report results by writing a JSON file into Hydra's output dir: no xstash import.
    metrics = {"message_length": len(str(cfg.get("message", ""))), "n_params": len(params)}
    with open(f"{hydra_cfg.runtime.output_dir}/metrics.json", "w") as handle:
        json.dump(metrics, handle)


if __name__ == "__main__":
    main()
