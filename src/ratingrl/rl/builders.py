"""The parts of a run, each built from its :class:`~ratingrl.rl.config.RunConfig` by one public
``make_*`` function, so a user (or a test) can build one part, replace it, and hand it to
:meth:`ratingrl.rl.run.Run.create`.

Checks that need the environment or a dataset live here too (:func:`env_dims`,
:func:`load_offline`): :func:`ratingrl.rl.train.check` runs them all before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.logger import Logger, make_output_format

from ratingrl.feedback.envs import PhysicsStateWrapper, has_physics_state, make_env
from ratingrl.feedback.io import load_preferences, load_rated
from ratingrl.feedback.preference_source import PreferenceSource, PreferenceTeacherSource
from ratingrl.feedback.queries import PAIR_SELECTORS, PairSelector, QuerySelector, make_selector
from ratingrl.feedback.schedules import Schedule
from ratingrl.feedback.segments import PreferencePairs, RatedSegments
from ratingrl.feedback.sources import FeedbackSource, RatingSource, TeacherSource
from ratingrl.feedback.store import FeedbackChannel, FeedbackStore, Labels
from ratingrl.feedback.teachers import (
    Bins,
    DynamicRatingTeacher,
    PreferenceTeacher,
    RatingTeacher,
    UniformRelabel,
)
from ratingrl.rewards.methods import R4, RewardMethod
from ratingrl.rewards.methods import make_method as make_registered_method
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig
from ratingrl.rewards.training import TrainerConfig, train_mixed, train_reward_model
from ratingrl.rl.backends import load_algorithm, make_algorithm
from ratingrl.rl.config import RunConfig
from ratingrl.rl.online import RewardUpdater
from ratingrl.rl.validation import RunError, method_data_kind

__all__ = [
    "RunInputs",
    "run_inputs",
    "env_dims",
    "load_offline",
    "make_schedule",
    "make_teacher_source",
    "make_preference_teacher",
    "make_query_selector",
    "make_channels",
    "records_states",
    "make_env_factory",
    "make_trainer_config",
    "make_method",
    "make_online_method",
    "train_offline_reward",
    "make_updater",
    "make_algorithm",
    "load_algorithm",
    "make_logger",
    "R4_ONLINE_GROUPS",
]

R4_ONLINE_GROUPS = 10
"""R4's online batches hold 10 groups (one segment per class each); offline ones 64."""


# -- checks that need the environment or the data --------------------------------------------
def env_dims(config: RunConfig) -> tuple[int, int]:
    """(obs_dim, act_dim) of the run's environment; a clear error if SB3 cannot train on it."""
    env = make_env(config.env_id)
    try:
        if not isinstance(env.action_space, spaces.Box):
            raise RunError(f"{config.env_id} has {env.action_space}: continuous actions needed")
        if not isinstance(env.observation_space, spaces.Box):
            raise RunError(f"{config.env_id} observations must be a flat Box")
        return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    finally:
        env.close()


def load_offline(
    config: RunConfig, dims: tuple[int, int]
) -> tuple[RatedSegments | None, PreferencePairs | None]:
    """The offline datasets, checked against the environment they are meant for."""
    rated = load_rated(config.dataset) if config.dataset else None
    pairs = load_preferences(config.preferences) if config.preferences else None
    for name, data in (("dataset", rated), ("preferences", pairs)):
        if data is None:
            continue
        seg = data.segments if isinstance(data, RatedSegments) else data.first
        if (seg.obs_dim, seg.act_dim) != dims:
            raise RunError(
                f"--{name} has (obs_dim, act_dim) = {(seg.obs_dim, seg.act_dim)} but "
                f"{config.env_id} has {dims}: it comes from a different environment"
            )
        env_id = data.source.get("env_id")
        if env_id is not None and env_id != config.env_id:
            raise RunError(f"--{name} was made on {env_id!r}, not on {config.env_id!r}")
    return rated, pairs


def make_schedule(config: RunConfig) -> Schedule:
    """The rounds of queries, checked to fit in the run (after entropy pre-training)."""
    schedule = config.schedule_plan()
    schedule.check_fits(config.total_steps, config.pretrain_steps)
    return schedule


@dataclass(frozen=True)
class RunInputs:
    """What a run learns from, checked before anything is written."""

    dims: tuple[int, int]
    rated: RatedSegments | None = None
    pairs: PreferencePairs | None = None
    schedule: Schedule | None = None
    source: FeedbackSource | None = None
    pair_source: FeedbackSource | None = None


def run_inputs(
    config: RunConfig,
    source: FeedbackSource | None,
    pair_source: FeedbackSource | None = None,
) -> RunInputs:
    """Every check a run makes before it touches its folder; the data and sources it uses.

    ``source`` None: the simulated teacher of an online run. ``pair_source`` answers the pairs
    of ``preference_budget`` (None: the simulated preference teacher); people's ratings are
    never mixed with a simulated teacher's pairs, so a ``source`` of one's own needs a
    ``pair_source`` of one's own too.
    """
    config.validate()
    dims = env_dims(config)
    rated = pairs = None
    if config.mode == "offline" and config.method != "oracle":
        rated, pairs = load_offline(config, dims)
    if not config.online:
        return RunInputs(dims, rated, pairs)
    if pair_source is not None and not config.preference_budget:
        raise RunError(
            "a pair source answers the pairs of --preference-budget, which is 0 in this run"
        )
    if pair_source is not None and not isinstance(pair_source, PreferenceSource):
        raise RunError(f"the pair source must be a PreferenceSource, not {type(pair_source)}")
    schedule = make_schedule(config)
    if source is None:
        source = make_teacher_source(config)
    elif config.preference_budget > 0 and pair_source is None:
        raise RunError(
            f"preference_budget={config.preference_budget} (--preference-budget): its pairs "
            "would come from the simulated teacher and be mixed with your source's labels; "
            "give a pair source of your own (the rating app's, with --ratings-db) or set it to 0"
        )
    return RunInputs(dims, rated, pairs, schedule, source, pair_source)


# -- feedback ----------------------------------------------------------------------------------
def _teacher_bins(config: RunConfig) -> Bins:
    """R4's hand-set boundaries on episode-scaled returns, or equal-width bins over a range.

    Equal-width bins over a DMC segment's full range [0, H] put every segment of an early
    policy on a sparse task (finger-spin: returns 0-6 of 50) in class 0, and a single class
    teaches nothing; R4's scaled boundaries are fine where early returns lie.
    """
    if config.rating_boundaries is not None:
        return Bins.r4_scaled(config.rating_boundaries, config.horizon)
    low_high = config.rating_range
    if low_high is None:
        if not config.env_id.startswith("dmc/"):
            raise RunError(
                f"give --rating-range LOW,HIGH (segment returns over {config.horizon} steps) "
                f"for the simulated teacher on {config.env_id}"
            )
        low_high = (0.0, float(config.horizon))  # DMC rewards are in [0, 1] per step
    return Bins.equal_width(config.n_classes, *low_high)


def make_preference_teacher(config: RunConfig) -> PreferenceTeacher:
    """B-Pref's oracle with ``label_noise`` as its mistake rate and the run's tie threshold."""
    return PreferenceTeacher(
        mistake=config.label_noise, equal_threshold=config.preference_equal_threshold
    )


def make_teacher_source(config: RunConfig) -> TeacherSource | PreferenceTeacherSource:
    """The simulated teacher of an online run: it rates (or compares) by the true return."""
    rng = np.random.default_rng(config.seed + 1)
    if method_data_kind(config.method) == "pairs":
        return PreferenceTeacherSource(make_preference_teacher(config), rng)
    noise = (UniformRelabel(config.label_noise),) if config.label_noise else ()
    bins = _teacher_bins(config)
    teacher = RatingTeacher(bins, noise)
    if not config.coarse_classes:
        return TeacherSource(teacher, rng)
    step = config.n_classes // config.coarse_classes
    coarse = Bins(bins.edges[step - 1 :: step], 1.0, "equal_width", {"n": config.coarse_classes})
    return TeacherSource(DynamicRatingTeacher(teacher, coarse, config.switch_after), rng)


def _pair_rule(config: RunConfig) -> str:
    """How pairs are picked: --selector when it can pick pairs, else entropy (B-Pref's best)."""
    return config.selector if config.selector in PAIR_SELECTORS else "entropy"


def make_query_selector(config: RunConfig, source: FeedbackSource) -> QuerySelector:
    """The rule that picks queries for ``source``: pairs for a pair source, segments otherwise
    (``auto``: R4's stratified rule over the source's scale)."""
    if not isinstance(source, RatingSource):
        return PairSelector(_pair_rule(config))
    name = "stratified" if config.selector == "auto" else config.selector
    return make_selector(name, source.scale.n)


def make_channels(
    config: RunConfig,
    source: FeedbackSource,
    schedule: Schedule,
    run_dir: Path,
    pair_source: FeedbackSource | None = None,
) -> list[FeedbackChannel]:
    """The run's kinds of feedback: the method's own, plus pairs when preference_budget > 0.

    The pairs come from ``pair_source``, by default :func:`make_preference_teacher` on its own
    random stream (seed + 3), so adding pairs leaves the rating teacher's answers unchanged.
    """
    meta = {"env_id": config.env_id}
    remap = source.remapper() if isinstance(source, RatingSource) else None
    store = FeedbackStore.load(run_dir / "feedback.parquet", meta, remap)
    selector = make_query_selector(config, source)
    channels = [FeedbackChannel(source, selector, store, schedule.counts, source.kind)]
    if config.preference_budget > 0:
        if pair_source is None:
            teacher = make_preference_teacher(config)
            pair_source = PreferenceTeacherSource(teacher, np.random.default_rng(config.seed + 3))
        pairs = FeedbackStore.load(run_dir / "feedback_pairs.parquet", meta)
        counts = schedule.share(config.preference_budget).counts
        channels.append(
            FeedbackChannel(pair_source, PairSelector(_pair_rule(config)), pairs, counts, "pairs")
        )
    return channels


def records_states(config: RunConfig, channels: Sequence[FeedbackChannel]) -> bool:
    """Whether training episodes keep simulator states: when some channel's source wants them
    (people rate clips in the app) and the environment has them (MuJoCo: Gymnasium or DMC).
    Otherwise nobody looks at them, and reading them every step would cost for nothing."""
    if not any(c.source.wants_states for c in channels):
        return False
    probe = make_env(config.env_id)
    try:
        return has_physics_state(probe)
    finally:
        probe.close()


def make_env_factory(config: RunConfig, record_states: bool = False) -> Callable[[], gym.Env]:
    """Builds one training sub-env; with ``record_states`` its simulator state is readable
    through ``env_method("physics_state")`` (what the episode recorder asks for)."""
    kwargs = (
        {} if config.max_episode_steps is None else {"max_episode_steps": config.max_episode_steps}
    )

    def build() -> gym.Env:
        env = make_env(config.env_id, **kwargs)
        return PhysicsStateWrapper(env) if record_states else env

    return build


# -- the reward --------------------------------------------------------------------------------
def make_trainer_config(config: RunConfig) -> TrainerConfig:
    """The reward trainer's settings for this run (online updates hold no validation split;
    with ``reward_update_steps`` each takes that many gradient steps)."""
    net = RewardNetConfig(
        hidden=config.reward_hidden, output=config.reward_output, ensemble_size=config.ensemble_size
    )
    return TrainerConfig(
        epochs=config.reward_epochs,
        batch_size=config.reward_batch_size,
        seed=config.seed,
        net=net,
        patience=10,
        val_fraction=_val_fraction(config),
        steps=config.reward_update_steps if config.mode == "online" else None,
    )


def _val_fraction(config: RunConfig) -> float:
    """Online updates train on every label: no held-out split picks the epoch.

    An online round adds tens of labels, so a 10% split holds a handful; model selection on it
    measured noise and, with the warm-started model, kept the first epoch of nearly every update
    (the next ten were computed and thrown away), so the reward hardly learned from new labels.
    PEBBLE and R4 likewise train each update for a fixed number of epochs on all labels.
    """
    if config.reward_val_fraction is not None:
        return config.reward_val_fraction
    return 0.0 if config.mode == "online" else 0.1


def make_method(config: RunConfig, name: str | None = None) -> RewardMethod:
    """Reward method ``name`` (default: the run's), with ``method_settings`` applied when it is
    the run's own method (the Bradley-Terry half of a mixed run keeps its defaults)."""
    name = name or config.method
    settings = config.method_settings if name == config.method else {}
    return make_registered_method(name, **settings)


def make_online_method(config: RunConfig) -> RewardMethod:
    """The method's settings for online updates: R4 uses its online batch of 10 groups
    (unless ``method_settings`` names ``groups_per_batch``).

    With 64 groups of one segment per class an R4 batch holds 4-6x the segments of the other
    methods' batches, which made each online update ~6x slower than RbRL's (127 s against
    21 s of reward training in a 100k-step PPO run) for no gain in the policy.
    """
    method = make_method(config)
    if isinstance(method, R4) and "groups_per_batch" not in config.method_settings:
        method = replace(method, groups_per_batch=R4_ONLINE_GROUPS)
    return method


def train_offline_reward(
    config: RunConfig, rated: RatedSegments | None, pairs: PreferencePairs | None
) -> tuple[RewardEnsemble, dict]:
    """The reward of an offline run, learned once from its datasets; and what to log of it."""
    trainer = make_trainer_config(config)
    if rated is not None and pairs is not None:
        pairs_only = method_data_kind(config.method) == "pairs"
        method = make_method(config, "r4" if pairs_only else config.method)
        result = train_mixed(
            rated, pairs, method, trainer, preference_weight=config.preference_weight
        )
    else:
        result = train_reward_model(rated or pairs, make_method(config), trainer)
    return result.model, {"val_score": result.best_val_score, "epochs": len(result.history)}


def make_updater(config: RunConfig) -> RewardUpdater:
    """Train on every channel's labels: ratings and pairs together when both are learnable.

    Ratings and pairs together go to ``train_mixed`` (the rating method's loss plus
    ``preference_weight`` x Bradley-Terry); either alone trains with its own method (pairs with
    Bradley-Terry), e.g. while the ratings still hold one class. Warm-started from ``model``.
    """
    method, trainer = make_online_method(config), make_trainer_config(config)

    def update(labels: Sequence[Labels | None], model: RewardEnsemble | None):
        ratings = next((d for d in labels if isinstance(d, RatedSegments)), None)
        pairs = next((d for d in labels if isinstance(d, PreferencePairs)), None)
        n = sum(len(d) for d in (ratings, pairs) if d is not None)
        seeded = replace(trainer, seed=trainer.seed + n)
        mixed = {}
        if ratings is not None and pairs is not None:
            weight = config.preference_weight
            result = train_mixed(
                ratings, pairs, method, seeded, preference_weight=weight, model=model
            )
            mixed = {"ratings": len(ratings), "pairs": len(pairs)}
        elif ratings is not None:
            result = train_reward_model(ratings, method, seeded, model=model)
        elif method_data_kind(config.method) == "pairs":
            result = train_reward_model(pairs, method, seeded, model=model)
        else:
            result = train_reward_model(pairs, make_method(config, "bt"), seeded, model=model)
        row = {
            "epochs": len(result.history),
            "steps": result.steps,
            "best_epoch": result.best_epoch,
            "loss": result.history[-1]["loss"],
        }
        if trainer.val_fraction > 0:  # without a split the "score" is only the negated loss
            row["val_score"] = result.best_val_score
        if "rater_weights" in result.extra:  # a model of each rater: how many it told apart
            row["raters"] = len(result.extra["rater_weights"])
        return result.model, {**row, **mixed}

    return update


# -- the policy (SB3 or SBX: rl/backends.py) -------------------------------------------------
def make_logger(run_dir: Path, start: int) -> Logger:
    """CSV and TensorBoard logs; each start of a run (resumes) writes its own CSV."""
    suffix = "" if start == 0 else f".resume{start}"
    return Logger(
        str(run_dir),
        [
            make_output_format("csv", str(run_dir), suffix),
            make_output_format("tensorboard", str(run_dir / "tb"), suffix),
        ],
    )
