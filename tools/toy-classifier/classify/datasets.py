"""Small, seeded, pure-Python data generators (in the spirit of sklearn.datasets.make_*)."""

from __future__ import annotations

import math
import random

Point = list[float]


class Blobs:
    """``n_classes`` isotropic Gaussian blobs with centres evenly spaced on a circle."""

    def __init__(
        self,
        n_samples: int = 300,
        n_classes: int = 3,
        radius: float = 3.0,
        cluster_std: float = 1.0,
    ) -> None:
        if n_samples < 2 or n_classes < 2:
            raise ValueError("Blobs needs n_samples >= 2 and n_classes >= 2")
        self.n_samples = n_samples
        self.n_classes = n_classes
        self.radius = radius
        self.cluster_std = cluster_std

    def generate(self, rng: random.Random) -> tuple[list[Point], list[int]]:
        centres = [
            (
                self.radius * math.cos(2 * math.pi * k / self.n_classes),
                self.radius * math.sin(2 * math.pi * k / self.n_classes),
            )
            for k in range(self.n_classes)
        ]
        points: list[Point] = []
        labels: list[int] = []
        for i in range(self.n_samples):
            label = i % self.n_classes
            cx, cy = centres[label]
            points.append([rng.gauss(cx, self.cluster_std), rng.gauss(cy, self.cluster_std)])
            labels.append(label)
        return points, labels


class Moons:
    """Two interleaving half circles with Gaussian noise (like sklearn's make_moons)."""

    def __init__(self, n_samples: int = 300, noise: float = 0.15) -> None:
        if n_samples < 2:
            raise ValueError("Moons needs n_samples >= 2")
        self.n_samples = n_samples
        self.noise = noise

    def generate(self, rng: random.Random) -> tuple[list[Point], list[int]]:
        n_outer = self.n_samples // 2
        n_inner = self.n_samples - n_outer
        points: list[Point] = []
        labels: list[int] = []
        for i in range(n_outer):
            t = math.pi * i / max(n_outer - 1, 1)
            points.append([math.cos(t), math.sin(t)])
            labels.append(0)
        for i in range(n_inner):
            t = math.pi * i / max(n_inner - 1, 1)
            points.append([1 - math.cos(t), 0.5 - math.sin(t)])
            labels.append(1)
        for point in points:
            point[0] += rng.gauss(0.0, self.noise)
            point[1] += rng.gauss(0.0, self.noise)
        return points, labels
