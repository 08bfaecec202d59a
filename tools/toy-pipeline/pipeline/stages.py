"""The three stages. Each reads what an earlier stage wrote (paths come from the config) and
writes its own files into the run directory ``out``; each returns its metrics."""

from __future__ import annotations

import json
import os
import random


class BuildData:
    """Noisy points on the line y = 2x + 1, written to ``dataset.json``."""

    def __init__(self, n_samples: int = 200, noise: float = 0.1) -> None:
        self.n_samples, self.noise = n_samples, noise

    def run(self, out: str, seed: int) -> dict[str, float]:
        rng = random.Random(seed)
        xs = [rng.uniform(-1, 1) for _ in range(self.n_samples)]
        ys = [2 * x + 1 + rng.gauss(0, self.noise) for x in xs]
        with open(os.path.join(out, "dataset.json"), "w") as handle:
            json.dump({"x": xs, "y": ys}, handle)
        return {"n_samples": self.n_samples}


class Train:
    """Gradient descent on the dataset ``data`` (a path); the model goes to ``model.json``."""

    def __init__(self, data: str, lr: float = 0.1, epochs: int = 50) -> None:
        self.data, self.lr, self.epochs = data, lr, epochs

    def run(self, out: str, seed: int) -> dict[str, float]:
        with open(self.data) as handle:
            data = json.load(handle)
        w = b = 0.0
        pairs = list(zip(data["x"], data["y"], strict=True))
        for _ in range(self.epochs):
            gw = sum((w * x + b - y) * x for x, y in pairs) / len(pairs)
            gb = sum(w * x + b - y for x, y in pairs) / len(pairs)
            w, b = w - self.lr * 2 * gw, b - self.lr * 2 * gb
        loss = sum((w * x + b - y) ** 2 for x, y in pairs) / len(pairs)
        with open(os.path.join(out, "model.json"), "w") as handle:
            json.dump({"w": w, "b": b}, handle)
        return {"train_loss": round(loss, 5)}


class Evaluate:
    """The model ``model`` (a path) on fresh points of the same line: ``r2`` and ``mse``."""

    def __init__(self, model: str, n_samples: int = 100, noise: float = 0.1) -> None:
        self.model, self.n_samples, self.noise = model, n_samples, noise

    def run(self, out: str, seed: int) -> dict[str, float]:
        with open(self.model) as handle:
            model = json.load(handle)
        rng = random.Random(seed + 1)
        xs = [rng.uniform(-1, 1) for _ in range(self.n_samples)]
        ys = [2 * x + 1 + rng.gauss(0, self.noise) for x in xs]
        predicted = [model["w"] * x + model["b"] for x in xs]
        mse = sum((p - y) ** 2 for p, y in zip(predicted, ys, strict=True)) / len(ys)
        mean = sum(ys) / len(ys)
        var = sum((y - mean) ** 2 for y in ys) / len(ys)
        return {"mse": round(mse, 5), "r2": round(1 - mse / var, 4)}
