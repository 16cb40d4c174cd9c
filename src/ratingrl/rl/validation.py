"""Checks of a run configuration that need no file and no environment: options that do not fit
together fail here, with the option to change named, before anything is built.

Checks that need the environment or a dataset (shapes, the env a dataset came from) are in
:mod:`ratingrl.rl.builders`.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ratingrl.feedback.queries import PAIR_SELECTORS, SELECTORS

# The reward-method registry (and with it torch) is imported by the checks that need it, not
# here: the command line builds its options from RunConfig, and `ratingrl --help` stays fast.

if TYPE_CHECKING:
    from ratingrl.rl.config import RunConfig

__all__ = ["RunError", "validate_config", "method_data_kind"]

ALGOS = ("sac", "ppo")
BACKENDS = ("sb3", "sbx")
MODES = ("offline", "online")
SCHEDULES = ("r4", "interval", "explicit")


class RunError(ValueError):
    """A run that cannot start: the message says which option to change."""


def method_data_kind(name: str) -> str:
    """``"ratings"`` or ``"pairs"``: what the registered reward method ``name`` learns from."""
    from ratingrl.rewards.methods import method_class

    return method_class(name).data_kind


def validate_config(config: RunConfig) -> None:
    """Raise :class:`RunError` for options that do not fit together.

    The run's ``plugins`` are imported first: a method they register is then a known method.
    """
    from ratingrl.rewards.methods import TrainingError, load_plugins

    try:
        load_plugins(list(config.plugins))
    except TrainingError as err:
        raise RunError(f"--plugins: {err}") from None
    _check_choices(config)
    _check_backend(config)
    _check_preference_budget(config)
    _check_equal_threshold(config)
    _check_method_settings(config)
    if config.method == "oracle":
        return
    if config.mode == "offline":
        _check_offline(config)
    else:
        _check_online(config)


def _check_choices(config: RunConfig) -> None:
    from ratingrl.rewards.methods import registered_methods

    methods = [*registered_methods(), "oracle"]
    checks = [
        (config.algo in ALGOS, f"unknown algo {config.algo!r}; choose one of {list(ALGOS)}"),
        (
            config.method in methods,
            f"unknown method {config.method!r}; choose one of {methods} (or register one "
            "in a module given with --plugins)",
        ),
        (config.mode in MODES, f"unknown mode {config.mode!r}; choose one of {list(MODES)}"),
        (config.total_steps >= 1, f"total_steps must be >= 1, got {config.total_steps}"),
        (config.n_envs >= 1, f"n_envs must be >= 1, got {config.n_envs}"),
        (config.eval_every >= 1 and config.eval_episodes >= 1, "eval_every/eval_episodes >= 1"),
        (
            config.reward_val_fraction is None or 0.0 <= config.reward_val_fraction < 1.0,
            f"reward_val_fraction must be in [0, 1), got {config.reward_val_fraction}",
        ),
        (
            config.reward_update_steps is None or config.reward_update_steps >= 1,
            f"reward_update_steps must be >= 1 or None, got {config.reward_update_steps}",
        ),
        (config.schedule in SCHEDULES, f"unknown schedule {config.schedule!r}: {SCHEDULES}"),
        (
            config.schedule_unit is None or config.schedule_unit >= 1,
            f"schedule_unit (--schedule-unit) must be >= 1 or None, got {config.schedule_unit}",
        ),
        (
            config.selector in (*SELECTORS, "auto"),
            f"unknown selector {config.selector!r}: {(*SELECTORS, 'auto')}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise RunError(message)


def _check_backend(config: RunConfig) -> None:
    """SBX is an optional extra: say how to install it before anything is built."""
    if config.backend not in BACKENDS:
        raise RunError(f"unknown backend {config.backend!r}; choose one of {list(BACKENDS)}")
    if config.backend == "sbx" and importlib.util.find_spec("sbx") is None:
        raise RunError(
            "backend 'sbx' (--backend sbx) needs SBX and JAX, which are not installed: "
            "pip install 'ratingrl[jax]' (or use --backend sb3)"
        )


def _check_offline(config: RunConfig) -> None:
    if config.reward_update_steps is not None:
        raise RunError(
            f"reward_update_steps={config.reward_update_steps} (--reward-update-steps) sets "
            "the online reward updates; an offline run trains --reward-epochs once"
        )
    pairs = method_data_kind(config.method) == "pairs"
    if config.dataset is None and config.preferences is None:
        raise RunError("offline training needs --dataset (ratings) or --preferences")
    if pairs and config.preferences is None:
        raise RunError(f"method {config.method} learns from --preferences (a preference dataset)")
    if not pairs and config.dataset is None:
        raise RunError(f"method {config.method} learns from --dataset (rated segments)")


def _check_online(config: RunConfig) -> None:
    if method_data_kind(config.method) == "pairs" and config.selector not in (
        *PAIR_SELECTORS,
        "auto",
    ):
        raise RunError(
            f"selector {config.selector!r} picks segments to rate; preference pairs are "
            f"chosen by one of {list(PAIR_SELECTORS)}"
        )
    bounds = config.rating_boundaries
    if bounds is not None and (
        len(bounds) < 3 or any(b <= a for a, b in zip(bounds, bounds[1:], strict=False))
    ):
        raise RunError(
            f"--rating-boundaries {list(bounds)} must be at least 3 strictly increasing "
            "numbers (the outer two document the range)"
        )
    if bounds is not None and config.coarse_classes:
        raise RunError("--coarse-classes works with --classes, not --rating-boundaries")
    coarse, fine = config.coarse_classes, config.n_classes
    if coarse and (coarse < 2 or coarse >= fine or fine % coarse):
        raise RunError(
            f"--coarse-classes {coarse} must be >= 2, fewer than --classes {fine} and divide it "
            "(coarse edges must be fine edges)"
        )
    if config.dataset is not None or config.preferences is not None:
        raise RunError("online runs collect their own labels: drop --dataset")


def _check_method_settings(config: RunConfig) -> None:
    """Unknown keys would otherwise fail only at the first reward update, rounds in."""
    if not config.method_settings:
        return
    from ratingrl.rewards.methods import TrainingError, make_method

    spec = ",".join(f"{k}={v}" for k, v in config.method_settings.items())
    if config.method == "oracle":
        raise RunError(f"--method oracle[{spec}]: the oracle has no settings")
    try:
        make_method(config.method, **config.method_settings)
    except (TrainingError, TypeError) as err:
        raise RunError(f"--method {config.method}[{spec}]: {err}") from None


def _check_equal_threshold(config: RunConfig) -> None:
    """The tie threshold belongs to the online preference teacher; elsewhere it would be
    silently ignored, so it is refused."""
    value = config.preference_equal_threshold
    name = f"preference_equal_threshold={value} (--preference-equal-threshold)"
    if not value >= 0.0:
        raise RunError(f"{name} must be >= 0")
    asks_pairs = config.preference_budget > 0 or (
        config.method != "oracle" and method_data_kind(config.method) == "pairs"
    )
    if value > 0.0 and not (config.mode == "online" and asks_pairs):
        raise RunError(
            f"{name} sets the online preference teacher; this run asks for no pairs "
            "(use --method bt or --preference-budget with --mode online)"
        )


def _check_preference_budget(config: RunConfig) -> None:
    """Pairs beside ratings: online, a rating method, and at least one pair every round.

    A round without pairs would train on ratings alone there, so a budget smaller than the
    rounds is refused rather than silently spread thin.
    """
    n = config.preference_budget
    if n == 0:
        return
    name = f"preference_budget={n} (--preference-budget)"
    if n < 0:
        raise RunError(f"{name} must be >= 0")
    if config.mode != "online" or config.method == "oracle":
        raise RunError(
            f"{name} asks for pairs during an online run; mode {config.mode!r} with method "
            f"{config.method!r} asks for none (offline: mix with --preferences instead)"
        )
    if method_data_kind(config.method) == "pairs":
        raise RunError(
            f"{name} asks for pairs besides ratings, but method {config.method!r} learns from "
            "pairs alone (its budget is --budget): choose a rating method (r4, rbrl, multitask, "
            "regression) or set it to 0"
        )
    rounds = config.round_count()
    if rounds is not None and n < rounds:
        raise RunError(
            f"{name} cannot give each of the {rounds} feedback rounds a pair: ask for at "
            f"least {rounds} pairs, or fewer rounds (--budget / --per-round)"
        )
