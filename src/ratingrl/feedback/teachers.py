"""Simulated teachers: explicit, seeded, serialisable stand-ins for people.

A rating teacher is (binning rule, noise model); a preference teacher is one of B-Pref's
(oracle, noisy, mistake, skip, myopic, equal). Both look only at the environment's true
segment return, which is what lets every method be benchmarked without people. Every teacher
has ``to_dict()``, and :func:`teacher_from_dict` rebuilds it, so the exact teacher behind a
dataset travels inside the dataset file.

All randomness comes from the ``np.random.Generator`` passed to each call: the same teacher,
segments and generator state give the same labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ratingrl.feedback.segments import FeedbackError, RatedSegments, RatingScale, SegmentSet

__all__ = [
    "Bins",
    "UniformRelabel",
    "AdjacentSwap",
    "GaussianReturnNoise",
    "RatingTeacher",
    "DynamicRatingTeacher",
    "PreferenceTeacher",
    "teacher_from_dict",
]

R4_EPISODE_LENGTH = 1000


# -- binning rules ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Bins:
    """Map a segment return to a class: ``class = #(interior edges <= scale * return)``.

    ``edges`` are the n-1 *interior* boundaries, ascending, so returns beyond the outer edges
    fall into the outer classes (never wrapped round to class 0). ``kind`` and ``params``
    record which rule built the edges, for provenance.
    """

    edges: tuple[float, ...]
    scale: float = 1.0
    kind: str = "fixed"
    params: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        if len(edges) < 1:
            raise FeedbackError("Bins.edges needs at least one interior edge (two classes)")
        if any(not math.isfinite(e) for e in edges):
            raise FeedbackError(f"Bins.edges must be finite, got {edges}")
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise FeedbackError(f"Bins.edges must be strictly increasing, got {edges}")
        object.__setattr__(self, "edges", edges)

    @property
    def n_classes(self) -> int:
        return len(self.edges) + 1

    def classify(self, returns: np.ndarray) -> np.ndarray:
        """Class index of each return (0 = worst)."""
        x = np.asarray(returns, dtype=np.float64) * self.scale
        return np.searchsorted(np.asarray(self.edges), x, side="right").astype(np.int64)

    # factories --------------------------------------------------------------------------------
    @classmethod
    def fixed(cls, boundaries: Sequence[float]) -> Bins:
        """RbRL's fixed bins given as all n+1 boundaries ``b_0 < ... < b_n``.

        The outer boundaries only document the expected range; values beyond them are clamped
        into the outer classes.
        """
        boundaries = [float(b) for b in boundaries]
        if len(boundaries) < 3:
            raise FeedbackError(f"Bins.fixed needs at least 3 boundaries, got {boundaries}")
        return cls(tuple(boundaries[1:-1]), 1.0, "fixed", {"boundaries": boundaries})

    @classmethod
    def equal_width(cls, n: int, low: float, high: float) -> Bins:
        """``n`` equal-width classes over ``[low, high]`` (RbRL uses [0, 50] for DMC, H = 50)."""
        if n < 2 or not high > low:
            raise FeedbackError(f"Bins.equal_width needs n >= 2 and high > low, got {n, low, high}")
        edges = np.linspace(low, high, n + 1)[1:-1]
        return cls(tuple(edges), 1.0, "equal_width", {"n": n, "low": low, "high": high})

    @classmethod
    def quantile(cls, n: int, reference_returns: np.ndarray) -> Bins:
        """``n`` classes holding equal shares of a reference pool's returns."""
        ref = np.asarray(reference_returns, dtype=np.float64)
        if n < 2 or ref.size < n:
            raise FeedbackError(f"Bins.quantile needs n >= 2 and >= n returns, got n={n}")
        edges = np.quantile(ref, np.arange(1, n) / n)
        if np.any(np.diff(edges) <= 0):
            raise FeedbackError(
                f"quantile edges {edges.tolist()} are not distinct: the reference returns hold "
                "too many ties for {n} classes"
            )
        return cls(tuple(edges), 1.0, "quantile", {"n": n})

    @classmethod
    def r4_scaled(
        cls, boundaries: Sequence[float], horizon: int, episode_length: int = R4_EPISODE_LENGTH
    ) -> Bins:
        """R4's bins on the return rescaled to a full episode: ``x = G * episode_length / H``."""
        bins = cls.fixed(boundaries)
        params = {
            "boundaries": list(boundaries),
            "horizon": horizon,
            "episode_length": episode_length,
        }
        return cls(bins.edges, episode_length / horizon, "r4_scaled", params)

    def to_dict(self) -> dict:
        return {"edges": list(self.edges), "scale": self.scale, "kind": self.kind, **self.params}

    @classmethod
    def from_dict(cls, data: dict) -> Bins:
        params = {k: v for k, v in data.items() if k not in ("edges", "scale", "kind")}
        return cls(tuple(data["edges"]), float(data["scale"]), data["kind"], params)


# -- noise models ----------------------------------------------------------------------------
def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise FeedbackError(f"{name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class UniformRelabel:
    """With probability ``p`` replace a rating by a uniformly random class (may keep it)."""

    p: float

    def __post_init__(self) -> None:
        _check_probability("UniformRelabel.p", self.p)

    def apply(self, ratings: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(len(ratings)) < self.p
        out = ratings.copy()
        out[flip] = rng.integers(0, n, size=int(flip.sum()))
        return out

    def to_dict(self) -> dict:
        return {"type": "uniform_relabel", "p": self.p}


@dataclass(frozen=True)
class AdjacentSwap:
    """R4's noise: swap the labels of ``round(fraction * N)`` pairs from adjacent classes."""

    fraction: float

    def __post_init__(self) -> None:
        _check_probability("AdjacentSwap.fraction", self.fraction)

    def apply(self, ratings: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        out = ratings.copy()
        free = np.ones(len(out), dtype=bool)  # each segment is swapped at most once
        for _ in range(round(self.fraction * len(ratings))):
            pairs = [
                j
                for j in range(n - 1)
                if (free & (out == j)).any() and (free & (out == j + 1)).any()
            ]
            if not pairs:
                break
            j = pairs[rng.integers(len(pairs))]
            a = rng.choice(np.flatnonzero(free & (out == j)))
            b = rng.choice(np.flatnonzero(free & (out == j + 1)))
            out[a], out[b] = j + 1, j
            free[[a, b]] = False
        return out

    def to_dict(self) -> dict:
        return {"type": "adjacent_swap", "fraction": self.fraction}


@dataclass(frozen=True)
class GaussianReturnNoise:
    """Add N(0, sigma^2) to each true return before binning (a teacher unsure near edges)."""

    sigma: float

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise FeedbackError(f"GaussianReturnNoise.sigma must be >= 0, got {self.sigma!r}")

    def perturb(self, returns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return returns + rng.normal(0.0, self.sigma, size=returns.shape)

    def to_dict(self) -> dict:
        return {"type": "gaussian_return", "sigma": self.sigma}


LabelNoise = UniformRelabel | AdjacentSwap


def _noise_from_dict(data: dict) -> LabelNoise | GaussianReturnNoise:
    kinds = {
        "uniform_relabel": lambda d: UniformRelabel(d["p"]),
        "adjacent_swap": lambda d: AdjacentSwap(d["fraction"]),
        "gaussian_return": lambda d: GaussianReturnNoise(d["sigma"]),
    }
    if data.get("type") not in kinds:
        raise FeedbackError(f"unknown noise type {data.get('type')!r}; known: {sorted(kinds)}")
    return kinds[data["type"]](data)


# -- rating teachers -------------------------------------------------------------------------
@dataclass(frozen=True)
class RatingTeacher:
    """Rates segments by binning their true return, then applies the noise models in order.

    Return noise (:class:`GaussianReturnNoise`) acts before binning, label noise after.
    """

    bins: Bins
    noise: tuple[LabelNoise | GaussianReturnNoise, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def scale(self) -> RatingScale:
        return RatingScale(self.bins.n_classes, self.names)

    def clean_ratings(self, segments: SegmentSet) -> np.ndarray:
        """Noise-free ratings: what a perfect teacher with these bins would say."""
        return self.bins.classify(segments.true_returns)

    def rate(self, segments: SegmentSet, rng: np.random.Generator) -> np.ndarray:
        returns = segments.true_returns.astype(np.float64)
        for model in self.noise:
            if isinstance(model, GaussianReturnNoise):
                returns = model.perturb(returns, rng)
        ratings = self.bins.classify(returns)
        for model in self.noise:
            if not isinstance(model, GaussianReturnNoise):
                ratings = model.apply(ratings, self.bins.n_classes, rng)
        return ratings

    def rate_dataset(self, segments: SegmentSet, rng: np.random.Generator) -> RatedSegments:
        """Rate ``segments`` and package them with this teacher's configuration."""
        return RatedSegments(segments, self.rate(segments, rng), self.scale, self.to_dict())

    def to_dict(self) -> dict:
        return {
            "type": "rating",
            "bins": self.bins.to_dict(),
            "noise": [m.to_dict() for m in self.noise],
            "names": list(self.names),
        }


@dataclass
class DynamicRatingTeacher:
    """R4's "response shift": fine classes for the first ``switch_after`` ratings, coarse after.

    The coarse edges must be a subset of the fine edges, so every fine class lies inside one
    coarse class and stored ratings can be remapped exactly with :meth:`remap`. The teacher
    counts the ratings it has given (its only state, saved by ``to_dict``).
    """

    fine: RatingTeacher
    coarse_bins: Bins
    switch_after: int = 40
    rated: int = 0

    def __post_init__(self) -> None:
        fine = set(self.fine.bins.edges)
        missing = [e for e in self.coarse_bins.edges if e not in fine]
        if missing or self.coarse_bins.scale != self.fine.bins.scale:
            raise FeedbackError(
                f"coarse edges {missing} are not fine edges {sorted(fine)} (same scale needed)"
            )
        # fine class j spans [fine_edges[j-1], fine_edges[j]); its coarse class is where its
        # lower edge falls (class 0's lower edge is -inf).
        lower = np.concatenate([[-np.inf], np.asarray(self.fine.bins.edges)])
        self._coarse_of_fine = np.searchsorted(
            np.asarray(self.coarse_bins.edges), lower, side="right"
        )

    @property
    def switched(self) -> bool:
        return self.rated >= self.switch_after

    @property
    def scale(self) -> RatingScale:
        return RatingScale(
            self.coarse_bins.n_classes if self.switched else self.fine.bins.n_classes
        )

    def current_teacher(self) -> RatingTeacher:
        if not self.switched:
            return self.fine
        return RatingTeacher(self.coarse_bins, self.fine.noise)

    def rate(self, segments: SegmentSet, rng: np.random.Generator) -> np.ndarray:
        """Rate on the current scale, then count; the switch happens between calls."""
        ratings = self.current_teacher().rate(segments, rng)
        self.rated += len(segments)
        return ratings

    def remap(self, fine_ratings: np.ndarray) -> np.ndarray:
        """Coarse class of each fine rating (apply to stored ratings after the switch)."""
        fine_ratings = self.fine.scale.validate(fine_ratings, "fine_ratings")
        return self._coarse_of_fine[fine_ratings]

    def to_dict(self) -> dict:
        return {
            "type": "dynamic_rating",
            "fine": self.fine.to_dict(),
            "coarse_bins": self.coarse_bins.to_dict(),
            "switch_after": self.switch_after,
            "rated": self.rated,
        }


# -- preference teachers (B-Pref) ------------------------------------------------------------
@dataclass(frozen=True)
class PreferenceTeacher:
    """B-Pref's scripted teacher, with every knob explicit.

    - ``beta``: rationality. ``inf`` answers deterministically (the oracle); finite values answer
      Bernoulli(sigmoid(beta * (G1 - G0) / return_scale)). Dividing by ``return_scale`` (e.g. the
      spread of segment returns in the pool) keeps beta meaningful across environments; without
      it a teacher on large returns is deterministic whatever beta says.
    - ``gamma``: myopia; step t of H is weighted ``gamma ** (H - 1 - t)`` (recent steps count more).
    - ``mistake``: probability of flipping the answer.
    - ``skip_threshold``: skip the query when both (weighted) returns are below it.
    - ``equal_threshold``: answer 0.5 when the returns differ by less than it.
    """

    beta: float = math.inf
    gamma: float = 1.0
    mistake: float = 0.0
    skip_threshold: float = -math.inf
    equal_threshold: float = 0.0
    return_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_probability("PreferenceTeacher.mistake", self.mistake)
        if not 0.0 < self.gamma <= 1.0:
            raise FeedbackError(f"PreferenceTeacher.gamma must be in (0, 1], got {self.gamma!r}")
        if not self.beta > 0 or not self.return_scale > 0:
            raise FeedbackError("PreferenceTeacher.beta and return_scale must be positive")

    @classmethod
    def preset(cls, name: str, return_scale: float = 1.0) -> PreferenceTeacher:
        """B-Pref's named teachers; thresholds are fractions of ``return_scale``."""
        presets = {
            "oracle": {},
            "noisy": {"beta": 1.0},
            "mistake": {"mistake": 0.1},
            "skip": {"skip_threshold": -0.5 * return_scale},
            "myopic": {"gamma": 0.9},
            "equal": {"equal_threshold": 0.1 * return_scale},
        }
        if name not in presets:
            raise FeedbackError(f"unknown preference teacher {name!r}; known: {sorted(presets)}")
        return cls(return_scale=return_scale, **presets[name])

    def _weighted_returns(self, segments: SegmentSet) -> np.ndarray:
        rewards = segments.true_rewards
        if rewards is None:
            raise FeedbackError("preference teachers need segments with true_rewards")
        weights = self.gamma ** np.arange(rewards.shape[1] - 1, -1, -1, dtype=np.float64)
        return rewards @ weights

    def label(
        self, first: SegmentSet, second: SegmentSet, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(labels, answered)``: P(second preferred) and which queries were not skipped."""
        g0, g1 = self._weighted_returns(first), self._weighted_returns(second)
        answered = np.maximum(g0, g1) >= self.skip_threshold
        if math.isinf(self.beta):
            labels = (g1 > g0).astype(np.float64)
        else:
            z = np.clip(self.beta * (g1 - g0) / self.return_scale, -50, 50)
            labels = (rng.random(len(g0)) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
        flip = rng.random(len(g0)) < self.mistake
        labels[flip] = 1.0 - labels[flip]
        labels[np.abs(g1 - g0) < self.equal_threshold] = 0.5
        return labels.astype(np.float32), answered

    def to_dict(self) -> dict:
        return {
            "type": "preference",
            "beta": self.beta,
            "gamma": self.gamma,
            "mistake": self.mistake,
            "skip_threshold": self.skip_threshold,
            "equal_threshold": self.equal_threshold,
            "return_scale": self.return_scale,
        }


def teacher_from_dict(data: dict) -> RatingTeacher | DynamicRatingTeacher | PreferenceTeacher:
    """Rebuild any teacher from its ``to_dict()`` (as stored in a dataset's metadata)."""
    kind = data.get("type")
    if kind == "rating":
        return RatingTeacher(
            Bins.from_dict(data["bins"]),
            tuple(_noise_from_dict(d) for d in data["noise"]),
            tuple(data.get("names", ())),
        )
    if kind == "dynamic_rating":
        fine = teacher_from_dict(data["fine"])
        assert isinstance(fine, RatingTeacher)
        return DynamicRatingTeacher(
            fine, Bins.from_dict(data["coarse_bins"]), data["switch_after"], data["rated"]
        )
    if kind == "preference":
        fields = {k: float(v) for k, v in data.items() if k != "type"}
        return PreferenceTeacher(**fields)
    raise FeedbackError(f"unknown teacher type {kind!r}")
