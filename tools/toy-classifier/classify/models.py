"""Small pure-Python classifiers with a scikit-learn-like ``fit``/``predict`` interface."""

from __future__ import annotations

import random

Point = list[float]


def _classes(labels: list[int]) -> list[int]:
    return sorted(set(labels))


class NearestCentroid:
    """Predicts the class whose training mean is closest."""

    def __init__(self, metric: str = "euclidean") -> None:
        if metric not in ("euclidean", "manhattan"):
            raise ValueError(f"unknown metric {metric!r}: use 'euclidean' or 'manhattan'")
        self.metric = metric
        self.centroids: dict[int, Point] = {}

    def fit(self, points: list[Point], labels: list[int], rng: random.Random) -> NearestCentroid:
        for label in _classes(labels):
            members = [p for p, y in zip(points, labels, strict=True) if y == label]
            self.centroids[label] = [sum(col) / len(members) for col in zip(*members, strict=True)]
        return self

    def _distance(self, a: Point, b: Point) -> float:
        if self.metric == "manhattan":
            return sum(abs(x - y) for x, y in zip(a, b, strict=True))
        return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))

    def predict(self, points: list[Point]) -> list[int]:
        return [
            min(self.centroids, key=lambda label: self._distance(p, self.centroids[label]))
            for p in points
        ]


class Perceptron:
    """Multi-class perceptron (one weight vector per class, plus a bias), optionally averaged."""

    def __init__(self, epochs: int = 20, lr: float = 1.0, average: bool = True) -> None:
        if epochs < 1 or lr <= 0:
            raise ValueError("Perceptron needs epochs >= 1 and lr > 0")
        self.epochs = epochs
        self.lr = lr
        self.average = average
        self.weights: dict[int, Point] = {}

    @staticmethod
    def _score(w: Point, p: Point) -> float:
        return w[-1] + sum(wi * xi for wi, xi in zip(w[:-1], p, strict=True))

    def _best(self, weights: dict[int, Point], p: Point) -> int:
        return max(weights, key=lambda label: self._score(weights[label], p))

    def fit(self, points: list[Point], labels: list[int], rng: random.Random) -> Perceptron:
        dim = len(points[0]) + 1
        weights = {label: [0.0] * dim for label in _classes(labels)}
        totals = {label: [0.0] * dim for label in weights}
        order = list(range(len(points)))
        steps = 0
        for _ in range(self.epochs):
            rng.shuffle(order)
            for i in order:
                p, y = points[i], labels[i]
                guess = self._best(weights, p)
                if guess != y:
                    for j, x in enumerate([*p, 1.0]):
                        weights[y][j] += self.lr * x
                        weights[guess][j] -= self.lr * x
                for label, w in weights.items():
                    totals[label] = [t + wi for t, wi in zip(totals[label], w, strict=True)]
                steps += 1
        if self.average:
            self.weights = {label: [t / steps for t in total] for label, total in totals.items()}
        else:
            self.weights = weights
        return self

    def predict(self, points: list[Point]) -> list[int]:
        return [self._best(self.weights, p) for p in points]
