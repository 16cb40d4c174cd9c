"""Ranking-aware verifiable rewards for ordinal prediction (RARL, arXiv 2601.20585).

Two layers:

* **Array rewards** (:func:`regression_scores`, :func:`kendall_tau`, :func:`ranking_scores`,
  :func:`joint_scores`) are pure, vectorised numpy functions over a batch of queries. A batch is a
  ``(B, N)`` array of predicted values and a ``(B, N)`` array of true values, one row per query
  and one column per item (image). Rows may hold fewer than ``N`` items: a ``NaN`` *target* marks
  padding (the item does not exist), a ``NaN`` *prediction* for an existing item marks a
  **missing** answer.
* **TRL reward callables** (:class:`RegressionReward`, :class:`RankingReward`,
  :class:`FormatReward`, :class:`JointReward`) have TRL's reward-function signature
  ``f(completions, **columns) -> list[float]``: they parse each completion as a JSON object with
  one numeric value per item id and score it against the ``target`` column.

Conventions (documented once, used everywhere):

* Regression: ``r_i = 1 - ((y_hat_i - y_i) / delta)**2`` if ``|y_hat_i - y_i| <= delta`` else 0;
  a missing prediction scores 0; the query reward is the mean over the existing items.
* Ranking: Kendall's tau-b between predictions and targets over the items present in both
  (exactly ``scipy.stats.kendalltau`` on those items, ties included), mapped to ``(tau + 1) / 2``.
  Where tau-b is undefined -- fewer than two items, or all predictions or all targets tied -- it
  is taken as 0 (no ordering information), i.e. the ranking reward is 0.5.
* Format: 1 if the answer is a JSON object whose keys are exactly the item ids and whose values
  are finite numbers, else 0. With ``require_format=True`` (the default) a malformed answer also
  gets 0 from the regression and ranking rewards, so no reward can be collected by omitting items.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "FormatReward",
    "JointReward",
    "ParsedAnswers",
    "RankingReward",
    "RegressionReward",
    "RewardWeights",
    "format_answer",
    "joint_scores",
    "kendall_tau",
    "parse_answers",
    "parse_targets",
    "ranking_scores",
    "regression_scores",
]

DEFAULT_DELTA = 2.0
"""Default regression tolerance, in the units of the ordinal values (not published by RARL)."""


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the joint reward ``R = reg * R_reg + rank * R_rank + fmt * R_fmt``.

    The RARL paper does not publish its weights; these defaults weigh accuracy and ordering
    equally and give format a smaller bonus so that a well-formed but wrong answer still ranks
    below a right one.
    """

    regression: float = 1.0
    ranking: float = 1.0
    format: float = 0.5


def _as_batch(values: ArrayLike) -> np.ndarray:
    """Return ``values`` as a float ``(B, N)`` array (a 1-D input is one query)."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"expected a (batch, items) array, got shape {array.shape}")
    return array


def _check_shapes(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")


def regression_scores(
    pred: ArrayLike, target: ArrayLike, delta: float = DEFAULT_DELTA
) -> np.ndarray:
    """Tolerance-based regression reward per query, in [0, 1].

    Each item earns ``1 - (err / delta)**2`` inside the tolerance and 0 outside, so the reward is
    dense near the truth yet bounded (unlike a squared error, one outlier cannot dominate a
    group's advantages). Missing predictions (``NaN``) earn 0; padded items (``NaN`` target) are
    ignored; a query without any item scores 0.

    >>> regression_scores([[3.0, 5.0], [0.0, float("nan")]], [[3.0, 6.0], [2.0, 1.0]], delta=2.0)
    array([0.875, 0.   ])
    """
    if delta <= 0:
        raise ValueError("delta must be positive")
    pred, target = _as_batch(pred), _as_batch(target)
    _check_shapes(pred, target)
    exists = ~np.isnan(target)
    err = np.where(exists, pred - np.where(exists, target, 0.0), np.nan)
    with np.errstate(invalid="ignore"):
        inside = np.abs(err) <= delta  # False for NaN, so missing answers score 0
    item = np.where(inside, 1.0 - np.square(np.nan_to_num(err) / delta), 0.0)
    count = exists.sum(axis=1)
    total = np.where(exists, item, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.zeros(len(count)), where=count > 0)


def kendall_tau(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Kendall's tau-b per query over the items present in both arrays (``NaN`` where undefined).

    Computed from the ``(B, N, N)`` pairwise sign tensors, so a batch costs one numpy expression.
    Equals ``scipy.stats.kendalltau(p, t)`` (variant ``"b"``) on the non-missing items of each row.

    >>> kendall_tau([[1, 2, 3], [3, 2, 1], [1, 1, 2]], [[1, 2, 3], [1, 2, 3], [1, 2, 3]])
    array([ 1.        , -1.        ,  0.81649658])
    >>> kendall_tau([[1.0, 1.0]], [[1.0, 2.0]])  # constant prediction: undefined
    array([nan])
    """
    pred, target = _as_batch(pred), _as_batch(target)
    _check_shapes(pred, target)
    valid = ~np.isnan(pred) & ~np.isnan(target)
    n = pred.shape[1]
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    pairs = valid[:, :, None] & valid[:, None, :] & upper
    p = np.where(valid, pred, 0.0)
    t = np.where(valid, target, 0.0)
    sign_p = np.sign(p[:, :, None] - p[:, None, :])
    sign_t = np.sign(t[:, :, None] - t[:, None, :])
    n0 = pairs.sum(axis=(1, 2))
    concordance = np.where(pairs, sign_p * sign_t, 0.0).sum(axis=(1, 2))
    untied_p = n0 - (pairs & (sign_p == 0)).sum(axis=(1, 2))
    untied_t = n0 - (pairs & (sign_t == 0)).sum(axis=(1, 2))
    denom = np.sqrt(untied_p.astype(float) * untied_t.astype(float))
    tau = np.divide(concordance, denom, out=np.full(len(denom), np.nan), where=denom > 0)
    return np.clip(tau, -1.0, 1.0)


def ranking_scores(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Ranking reward ``(tau_b + 1) / 2`` per query, in [0, 1]; undefined tau counts as 0.

    An undefined tau (fewer than two comparable items, or a fully tied prediction or target)
    carries no ordering information, hence the neutral value 0.5 rather than a penalty.

    >>> pred = [[1, 2, 3], [3, 2, 1], [4, 4, 4], [7, 0, 0]]
    >>> ranking_scores(pred, [[1, 2, 3], [1, 2, 3], [1, 2, 3], [5, 5, 9]])
    array([1.  , 0.  , 0.5 , 0.25])
    """
    tau = kendall_tau(pred, target)
    return (np.nan_to_num(tau, nan=0.0) + 1.0) / 2.0


def joint_scores(
    pred: ArrayLike,
    target: ArrayLike,
    well_formed: ArrayLike | None = None,
    delta: float = DEFAULT_DELTA,
    weights: RewardWeights | None = None,
) -> np.ndarray:
    """Weighted sum of the regression, ranking and format rewards per query.

    ``well_formed`` (default: all True) is the format reward as booleans; a malformed query gets
    0 from every term, so the format check gates the other rewards.

    >>> joint_scores([[3.0, 5.0]], [[3.0, 6.0]], delta=2.0, weights=RewardWeights(1.0, 1.0, 0.5))
    array([2.375])
    >>> joint_scores([[3.0, 5.0]], [[3.0, 6.0]], well_formed=[False])
    array([0.])
    """
    weights = weights or RewardWeights()
    pred, target = _as_batch(pred), _as_batch(target)
    fmt = np.ones(len(pred)) if well_formed is None else np.asarray(well_formed, dtype=float)
    total = (
        weights.regression * regression_scores(pred, target, delta)
        + weights.ranking * ranking_scores(pred, target)
        + weights.format
    )
    return total * fmt


# --------------------------------------------------------------------------- text answers

_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


class ParsedAnswers(NamedTuple):
    """Parsed completions: ``values`` ``(B, N)`` with ``NaN`` for missing items, ``well_formed``."""

    values: np.ndarray
    well_formed: np.ndarray


def format_answer(values: Mapping[str, float]) -> str:
    """Render the expected answer format (also the reference answer used by response mutation).

    >>> format_answer({"a": 3, "b": 7.5})
    '{"a": 3, "b": 7.5}'
    """
    return json.dumps(dict(values))


def _completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversation whose last message is the answer."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_one(text: str, item_ids: Sequence[str]) -> tuple[list[float], bool]:
    """Values for ``item_ids`` from the last JSON object in ``text``; whether it is well formed."""
    missing = [math.nan] * len(item_ids)
    candidates = _JSON_OBJECT.findall(text)
    if not candidates:
        return missing, False
    try:
        obj = json.loads(candidates[-1])
    except json.JSONDecodeError:
        return missing, False
    if not isinstance(obj, dict):
        return missing, False
    values = [float(obj[k]) if _is_number(obj.get(k)) else math.nan for k in item_ids]
    ok = set(obj) == set(item_ids) and all(not math.isnan(v) for v in values)
    return values, ok


def parse_answers(completions: Sequence[Any], item_ids: Sequence[Sequence[str]]) -> ParsedAnswers:
    """Parse a batch of completions against the item ids of each query.

    The answer is the last ``{...}`` object in the completion, so free text (reasoning) may come
    before it. It is *well formed* when its keys are exactly the query's item ids and every value
    is a finite number (JSON booleans and numeric strings are not numbers).

    >>> texts = ['{"a": 1, "b": 2}', 'I think {"a": 4}', "no idea"]
    >>> parsed = parse_answers(texts, [["a", "b"]] * 3)
    >>> parsed.values
    array([[ 1.,  2.],
           [ 4., nan],
           [nan, nan]])
    >>> parsed.well_formed
    array([ True, False, False])
    """
    if len(completions) != len(item_ids):
        raise ValueError("one list of item ids is needed per completion")
    width = max((len(ids) for ids in item_ids), default=0)
    values = np.full((len(completions), width), np.nan)
    well_formed = np.zeros(len(completions), dtype=bool)
    for row, (completion, ids) in enumerate(zip(completions, item_ids, strict=True)):
        parsed, ok = _parse_one(_completion_text(completion), [str(i) for i in ids])
        values[row, : len(parsed)] = parsed
        well_formed[row] = ok
    return ParsedAnswers(values, well_formed)


def _target_mapping(row: Any) -> dict[str, float]:
    """One target row as ``{item_id: value}``: a mapping, a JSON string of one, or a sequence."""
    if isinstance(row, str):
        row = json.loads(row)
    if isinstance(row, Mapping):
        return {str(k): float(v) for k, v in row.items() if v is not None}
    return {str(i): float(v) for i, v in enumerate(row)}


def parse_targets(rows: Sequence[Any]) -> tuple[list[list[str]], np.ndarray]:
    """Item ids and ``NaN``-padded ``(B, N)`` true values from a ``target`` column.

    >>> ids, values = parse_targets([{"a": 1, "b": 3}, '{"x": 2}', [5, 6, 7]])
    >>> ids
    [['a', 'b'], ['x'], ['0', '1', '2']]
    >>> values
    array([[ 1.,  3., nan],
           [ 2., nan, nan],
           [ 5.,  6.,  7.]])
    """
    mappings = [_target_mapping(row) for row in rows]
    ids = [list(m) for m in mappings]
    width = max((len(m) for m in mappings), default=0)
    values = np.full((len(mappings), width), np.nan)
    for i, m in enumerate(mappings):
        values[i, : len(m)] = list(m.values())
    return ids, values


# --------------------------------------------------------------------------- TRL callables


@dataclass
class _TextReward:
    """Shared parsing for the TRL reward callables (``__name__`` is what TRL logs)."""

    target_column: str = "target"
    require_format: bool = True
    name: str = field(default="ordinal", repr=False)

    def __post_init__(self) -> None:
        self.__name__ = self.name

    def _parse(
        self, completions: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[ParsedAnswers, np.ndarray]:
        if self.target_column not in kwargs:
            raise KeyError(f"reward needs a {self.target_column!r} column; got {sorted(kwargs)}")
        ids, target = parse_targets(kwargs[self.target_column])
        parsed = parse_answers(completions, ids)
        return parsed, target

    def _gate(self, scores: np.ndarray, parsed: ParsedAnswers) -> list[float]:
        if self.require_format:
            scores = np.where(parsed.well_formed, scores, 0.0)
        return [float(s) for s in scores]


@dataclass
class RegressionReward(_TextReward):
    """TRL reward: :func:`regression_scores` of the parsed answer against the ``target`` column.

    >>> reward = RegressionReward(delta=2.0)
    >>> reward(['{"a": 3, "b": 5}', '{"a": 3}'], target=[{"a": 3, "b": 6}] * 2)
    [0.875, 0.0]
    """

    delta: float = DEFAULT_DELTA
    name: str = field(default="ordinal_regression", repr=False)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        parsed, target = self._parse(completions, kwargs)
        return self._gate(regression_scores(parsed.values, target, self.delta), parsed)


@dataclass
class RankingReward(_TextReward):
    """TRL reward: :func:`ranking_scores` of the parsed answer against the ``target`` column.

    >>> reward = RankingReward()
    >>> texts = ['{"a": 1, "b": 2, "c": 3}', '{"a": 3, "b": 2, "c": 1}']
    >>> reward(texts, target=['{"a": 0, "b": 5, "c": 9}'] * 2)
    [1.0, 0.0]
    """

    name: str = field(default="ordinal_ranking", repr=False)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        parsed, target = self._parse(completions, kwargs)
        return self._gate(ranking_scores(parsed.values, target), parsed)


@dataclass
class FormatReward(_TextReward):
    """TRL reward: 1.0 for a JSON object with one finite number per item id, else 0.0.

    >>> FormatReward()(['{"a": 1, "b": 2}', '{"a": 1, "b": "2"}', '{"a": 1, "b": 2, "z": 0}'],
    ...                target=[{"a": 0, "b": 0}] * 3)
    [1.0, 0.0, 0.0]
    """

    name: str = field(default="ordinal_format", repr=False)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        parsed, _ = self._parse(completions, kwargs)
        return [float(ok) for ok in parsed.well_formed]


@dataclass
class JointReward(_TextReward):
    """TRL reward: the weighted sum :func:`joint_scores` (regression + ranking + format).

    >>> JointReward(delta=2.0)(['{"a": 3, "b": 5}', "{}"], target=[{"a": 3, "b": 6}] * 2)
    [2.375, 0.0]
    """

    delta: float = DEFAULT_DELTA
    weights: RewardWeights = field(default_factory=RewardWeights)
    name: str = field(default="ordinal_joint", repr=False)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        parsed, target = self._parse(completions, kwargs)
        well_formed = parsed.well_formed if self.require_format else None
        scores = joint_scores(parsed.values, target, well_formed, self.delta, self.weights)
        if not self.require_format:
            # Without the gate, the format term still rewards well-formed answers only.
            scores = scores - self.weights.format * (~parsed.well_formed)
        return [float(s) for s in scores]
