"""Human-like simulated raters: a crowd of people who do not share one scale.

One simulated teacher (:mod:`ratingrl.feedback.teachers`) stands for every rater at once; people
do not. In R4's human study (Kharyal et al. 2026) raters chose their own number of classes,
6.2 +- 2.3 on Reacher and 6.6 +- 2.3 on Hopper; people also put their boundaries in different
places, drift over a session and disagree with themselves when shown a clip again. A
:class:`SimulatedRater` has each of these as an explicit, seeded knob:

- ``edges``: their own class boundaries on the true-return scale (their number of classes is
  ``len(edges) + 1``), drawn as equal-share boundaries of a reference pool, stretched about the
  median and shifted (:func:`draw_rater`);
- ``drift``: every boundary moves by ``drift`` return units per rating given, so the same clip
  gets a lower class late in a session when ``drift > 0`` (the rater grows stricter);
- ``noise``: the sd of the rater's error in perceiving a return, so a repeat can disagree;
- ``random_answer``: the probability of a uniformly random class (a careless rater's clicks).

A :class:`Crowd` shares segments among its raters in balanced random order, shows some of them
again to the same rater later in the session (hidden repeats, as the rating app does) and
returns :class:`RatedSegments` with ``rater`` filled.

Ratings on different scales: a :class:`RatedSegments` has one :class:`RatingScale`, and the
trainer, metrics and files all assume one. So a crowd's ratings are stored on the scale of its
finest rater (``n`` = the largest class count) by each rater's position on their own scale:
class ``c`` of ``K`` becomes ``round(c (n - 1) / (K - 1))`` (:func:`to_common`; exactly
invertible, :func:`own_class`), and each rater's ``K`` is kept in ``source["rater_classes"]``
(:func:`rater_classes`). Pooled ratings then stay ordered sensibly (a rater's top class is the
top of the scale) for anything that knows nothing of raters, while a rater model recovers
what each person actually clicked. Data with one scale for everyone (the app's projects) needs
no entry: every rater then has ``scale.n`` classes.

The parameter ranges of :class:`CrowdConfig` other than the class counts are this module's
assumptions, stated in return spreads (sd of the reference returns), not measurements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ratingrl.feedback.segments import FeedbackError, RatedSegments, RatingScale, SegmentSet

__all__ = [
    "CrowdConfig",
    "SimulatedRater",
    "Crowd",
    "draw_rater",
    "draw_crowd",
    "to_common",
    "own_class",
    "rater_classes",
    "rescale_by_rater",
]

RATER_CLASSES = "rater_classes"
"""The key of ``RatedSegments.source`` that maps each rater to their own number of classes."""


# -- one rater -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimulatedRater:
    """One simulated person: their boundaries, drift, perceptual noise and random clicks."""

    name: str
    edges: tuple[float, ...]
    drift: float = 0.0
    noise: float = 0.0
    random_answer: float = 0.0
    careless: bool = False

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        if not edges or not all(np.isfinite(edges)):
            raise FeedbackError(f"SimulatedRater.edges must be finite and non-empty, got {edges}")
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise FeedbackError(f"SimulatedRater.edges must be strictly increasing, got {edges}")
        if not self.noise >= 0:
            raise FeedbackError(f"SimulatedRater.noise must be >= 0, got {self.noise!r}")
        if not 0.0 <= self.random_answer <= 1.0:
            raise FeedbackError(
                f"SimulatedRater.random_answer must be in [0, 1], got {self.random_answer!r}"
            )
        if not np.isfinite(self.drift):
            raise FeedbackError(f"SimulatedRater.drift must be finite, got {self.drift!r}")
        object.__setattr__(self, "edges", edges)

    @property
    def n_classes(self) -> int:
        return len(self.edges) + 1

    def rate(self, returns: np.ndarray, given: int, rng: np.random.Generator) -> np.ndarray:
        """Own-scale classes of ``returns`` rated in turn, after ``given`` earlier ratings.

        The k-th return (from 0) is judged with every boundary moved by ``drift * (given + k)``;
        noise and random answers are drawn from ``rng``.
        """
        returns = np.asarray(returns, dtype=np.float64)
        if given < 0:
            raise FeedbackError(f"given must be >= 0, got {given}")
        count = given + np.arange(len(returns))
        perceived = returns + (rng.normal(0.0, self.noise, len(returns)) if self.noise else 0.0)
        # boundaries moved up by d  <=>  the return moved down by d
        ratings = np.searchsorted(self.edges, perceived - self.drift * count, side="right")
        if self.random_answer:
            wild = rng.random(len(returns)) < self.random_answer
            ratings[wild] = rng.integers(0, self.n_classes, int(wild.sum()))
        return ratings.astype(np.int64)

    def to_dict(self) -> dict:
        return {**asdict(self), "edges": list(self.edges)}


# -- drawing raters --------------------------------------------------------------------------
@dataclass(frozen=True)
class CrowdConfig:
    """How simulated raters are drawn; spreads are sd's of the reference returns."""

    classes_mean: float = field(default=6.4, metadata={"help": "R4 study: 6.2 and 6.6"})
    classes_sd: float = field(default=2.3, metadata={"help": "R4 study: 2.3 on both tasks"})
    min_classes: int = 2
    max_classes: int = 10
    shift_sd: float = field(default=0.25, metadata={"help": "boundary shift, in spreads"})
    stretch_sd: float = field(default=0.2, metadata={"help": "sd of log boundary stretch"})
    drift_sd: float = field(
        default=0.3, metadata={"help": "boundary drift, in spreads per 100 ratings"}
    )
    careful_noise: tuple[float, float] = field(
        default=(0.05, 0.2), metadata={"help": "range of a careful rater's noise, in spreads"}
    )
    careless_noise: float = field(default=1.0, metadata={"help": "in spreads"})
    careless_random: float = field(default=0.3, metadata={"help": "P(random class), careless"})

    def __post_init__(self) -> None:
        if not 2 <= self.min_classes <= self.max_classes:
            raise FeedbackError(
                f"CrowdConfig needs 2 <= min_classes <= max_classes, got "
                f"{self.min_classes}..{self.max_classes}"
            )
        low, high = self.careful_noise
        if not 0 <= low <= high:
            raise FeedbackError(
                f"CrowdConfig.careful_noise must be 0 <= low <= high, got {low, high}"
            )


def draw_rater(
    name: str,
    reference_returns: np.ndarray,
    rng: np.random.Generator,
    config: CrowdConfig = CrowdConfig(),
    careless: bool = False,
) -> SimulatedRater:
    """A rater with a class count drawn as in R4's study and biased, drifting boundaries.

    Their unbiased boundaries hold equal shares of ``reference_returns``; these are stretched
    about the median by ``exp(N(0, stretch_sd))`` and shifted by ``N(0, shift_sd)`` spreads.
    """
    ref = np.asarray(reference_returns, dtype=np.float64)
    spread = float(ref.std())
    if ref.size < 2 * config.max_classes or not spread > 0:
        raise FeedbackError(
            f"reference_returns need >= {2 * config.max_classes} values that are not all equal"
        )
    k = round(rng.normal(config.classes_mean, config.classes_sd))
    k = int(np.clip(k, config.min_classes, config.max_classes))
    centre = float(np.median(ref))
    stretch = float(np.exp(rng.normal(0.0, config.stretch_sd)))
    shift = float(rng.normal(0.0, config.shift_sd)) * spread
    edges = centre + stretch * (np.quantile(ref, np.arange(1, k) / k) - centre) + shift
    edges = np.maximum.accumulate(edges) + 1e-9 * np.arange(k - 1)  # strictly increasing
    drift = float(rng.normal(0.0, config.drift_sd)) * spread / 100.0
    if careless:
        noise, wild = config.careless_noise * spread, config.careless_random
    else:
        noise, wild = float(rng.uniform(*config.careful_noise)) * spread, 0.0
    return SimulatedRater(name, tuple(edges), drift, noise, wild, careless)


def draw_crowd(
    n_raters: int,
    reference_returns: np.ndarray,
    rng: np.random.Generator,
    config: CrowdConfig = CrowdConfig(),
    n_careless: int = 0,
) -> Crowd:
    """``n_raters`` raters named ``rater00``.., the last ``n_careless`` of them careless."""
    if n_raters < 1 or not 0 <= n_careless <= n_raters:
        raise FeedbackError(
            f"draw_crowd needs n_raters >= 1 and 0 <= n_careless <= n_raters, got "
            f"{n_raters} and {n_careless}"
        )
    raters = [
        draw_rater(f"rater{i:02d}", reference_returns, rng, config, i >= n_raters - n_careless)
        for i in range(n_raters)
    ]
    return Crowd(tuple(raters))


# -- a crowd ---------------------------------------------------------------------------------
@dataclass
class Crowd:
    """Raters who share the segments; ``given`` counts each one's ratings so far (their session
    position, which drift depends on), and is the only state."""

    raters: tuple[SimulatedRater, ...]
    given: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.raters = tuple(self.raters)
        names = [r.name for r in self.raters]
        if not names or len(set(names)) != len(names):
            raise FeedbackError(f"a crowd needs raters with distinct names, got {names}")
        self.given = {name: int(self.given.get(name, 0)) for name in names}

    @property
    def scale(self) -> RatingScale:
        """The common scale ratings are stored on: the finest rater's."""
        return RatingScale(max(r.n_classes for r in self.raters))

    def rate(
        self, segments: SegmentSet, rng: np.random.Generator, repeats: int = 0
    ) -> RatedSegments:
        """Each segment rated once by one rater (balanced random shares), plus ``repeats``
        hidden repeats: a segment shown again, later in the session, to the rater who rated
        it. Ratings are on :attr:`scale` (see the module docstring); rows come rater by rater,
        each rater's in session order."""
        returns = segments.true_returns
        n_raters = len(self.raters)
        owner = rng.permutation(np.arange(len(segments)) % n_raters)
        repeat_owner = rng.permutation(np.arange(repeats) % n_raters)
        n = self.scale.n
        rows, ratings, names = [], [], []
        for r, rater in enumerate(self.raters):
            session = _session(np.flatnonzero(owner == r), int((repeat_owner == r).sum()), rng)
            own = rater.rate(returns[session], self.given[rater.name], rng)
            self.given[rater.name] += len(session)
            rows.append(session)
            ratings.append(to_common(own, rater.n_classes, n))
            names += [rater.name] * len(session)
        order = np.concatenate(rows)
        return RatedSegments(
            segments.subset(order),
            np.concatenate(ratings),
            self.scale,
            self.to_dict(),
            np.array(names, dtype=object),
        )

    def to_dict(self) -> dict:
        return {
            "type": "crowd",
            "raters": [r.to_dict() for r in self.raters],
            "given": dict(self.given),
            RATER_CLASSES: {r.name: r.n_classes for r in self.raters},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Crowd:
        raters = []
        for item in data["raters"]:
            raters.append(SimulatedRater(**{**item, "edges": tuple(item["edges"])}))
        return cls(tuple(raters), dict(data.get("given", {})))


def _session(items: np.ndarray, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """A rater's items in order, with ``repeats`` of them shown again at random later places."""
    if repeats > len(items):
        raise FeedbackError(f"{repeats} repeats asked of a rater with only {len(items)} segments")
    session = list(items)
    for item in rng.choice(items, repeats, replace=False):
        first = session.index(item)
        session.insert(int(rng.integers(first + 1, len(session) + 1)), item)
    return np.asarray(session, dtype=np.int64)


# -- scales ----------------------------------------------------------------------------------
def to_common(own: np.ndarray, k: int | np.ndarray, n: int) -> np.ndarray:
    """Class ``c`` of a ``k``-class scale placed on an ``n``-class scale (``k <= n``) by its
    position: ``round(c (n - 1) / (k - 1))``; the ends map to the ends."""
    own, k = np.asarray(own, dtype=np.int64), np.asarray(k, dtype=np.int64)
    if np.any(k > n) or np.any(k < 2):
        raise FeedbackError(f"class counts must be in 2..{n}, got {np.unique(k).tolist()}")
    return np.floor(own * (n - 1) / (k - 1) + 0.5).astype(np.int64)


def own_class(common: np.ndarray, k: int | np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`to_common`: a rater's own class (of ``k``) from a common one."""
    common, k = np.asarray(common, dtype=np.int64), np.asarray(k, dtype=np.int64)
    return np.floor(common * (k - 1) / (n - 1) + 0.5).astype(np.int64)


def rater_classes(data: RatedSegments) -> dict[object, int]:
    """Each rater's own number of classes: ``source["rater_classes"]``, else ``scale.n``.

    Keys are the rater names found in ``data.rater`` (None for unnamed rows)."""
    known = data.source.get(RATER_CLASSES, {}) if isinstance(data.source, dict) else {}
    names = [None] if data.rater is None else list(dict.fromkeys(data.rater))
    out = {name: int(known.get(name, data.scale.n)) for name in names}
    bad = {name: k for name, k in out.items() if not 2 <= k <= data.scale.n}
    if bad:
        raise FeedbackError(f"source['rater_classes'] {bad} outside 2..scale.n={data.scale.n}")
    return out


def rescale_by_rater(data: RatedSegments, n: int) -> RatedSegments:
    """Naive pooling onto ``n`` classes by each rater's fraction of their own scale.

    Own class ``c`` of ``K`` covers the fraction ``[c/K, (c+1)/K)`` of that rater's scale and
    becomes the class of ``n`` holding its midpoint, ``floor((c + 0.5) n / K)``. This is the
    baseline a rater model is measured against: it respects each rater's number of classes
    but not where they put their boundaries.
    """
    if n < 2:
        raise FeedbackError(f"n must be at least 2, got {n}")
    classes = rater_classes(data)
    names = [None] * len(data) if data.rater is None else data.rater
    k = np.array([classes[name] for name in names], dtype=np.int64)
    own = own_class(data.ratings, k, data.scale.n)
    ratings = np.floor((own + 0.5) * n / k).astype(np.int64)
    source = {"type": "rescaled_by_rater", "n": n, "from": data.source}
    return RatedSegments(data.segments, ratings, RatingScale(n), source, data.rater, data.label_id)
