"""``train(config, run_dir)``: a policy from ratings (offline or online), or the oracle.

Read top to bottom: check everything (environment, algorithm, dataset shapes, schedule, run
folder) before any training starts; build the environment, the learned-reward wrapper and the
SB3 algorithm; learn the reward (offline) or attach the online loop; learn the policy with
periodic evaluation and checkpoints; write ``summary.json``.

A run folder holds ``config.json``, ``feedback.parquet`` (online labels, written as they
arrive), ``feedback_pairs.parquet`` (online preference pairs asked for besides ratings, with
``preference_budget``), ``reward_model.pt``, ``checkpoint/`` (resume point), ``policy.zip``,
``progress*.csv`` (one per start), ``tb/`` (when tensorboard is installed) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, make_output_format

from ratingrl.feedback.envs import PhysicsStateWrapper, has_physics_state, make_env
from ratingrl.feedback.io import atomic_write_bytes, load_preferences, load_rated
from ratingrl.feedback.preference_source import PreferenceSource, PreferenceTeacherSource
from ratingrl.feedback.queries import PAIR_SELECTORS, SELECTORS, PairSelector, make_selector
from ratingrl.feedback.segments import PreferencePairs, RatedSegments
from ratingrl.feedback.sources import RatingSource, TeacherSource, wants_states
from ratingrl.feedback.teachers import (
    Bins,
    DynamicRatingTeacher,
    PreferenceTeacher,
    RatingTeacher,
    UniformRelabel,
)
from ratingrl.progress import progress_bar
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig
from ratingrl.rewards.training import (
    METHODS,
    R4Config,
    TrainerConfig,
    TrainingError,
    method_config,
    train_mixed,
    train_reward_model,
)
from ratingrl.rl.checkpoint import find_checkpoint, load_state, rng_state, save_checkpoint
from ratingrl.rl.entropy import StateEntropyReward
from ratingrl.rl.evaluation import LearnedEpisodeReturns, PeriodicEvaluation, evaluate
from ratingrl.rl.online import (
    FeedbackChannel,
    FeedbackStore,
    Labels,
    OnlineFeedback,
    RewardUpdater,
    Schedule,
    ScheduleError,
    remap_hook,
)
from ratingrl.rl.relabel import PPORolloutScorer
from ratingrl.rl.reward_wrapper import EpisodeRecorder, LearnedRewardVecEnv, zero_reward

__all__ = ["RunConfig", "RunError", "check", "train", "ALGOS", "REWARD_METHODS", "MODES"]

ALGOS = ("sac", "ppo")
REWARD_METHODS = (*METHODS, "oracle")
MODES = ("offline", "online")
SCHEDULES = ("r4", "interval", "explicit")


class RunError(ValueError):
    """A run that cannot start: the message says which option to change."""


def _f(default, help: str):  # noqa: A002 - mirrors dataclasses.field's metadata idiom
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; stored as ``config.json`` and compared on ``--resume``."""

    env_id: str = _f("dmc/cartpole-balance", "Gymnasium id or dmc/domain-task")
    algo: str = _f("sac", "sac | ppo")
    method: str = _f("r4", "reward method: r4 | rbrl | multitask | bt | regression | oracle")
    method_settings: dict = _f(
        {},
        "the method's own settings (its config's fields), e.g. {'alpha': 1.0} for multitask or "
        "{'kappa': 10} for rbrl; on the command line --method 'multitask[alpha=1]'",
    )
    mode: str = _f("online", "offline (fixed --dataset) | online (queries while training)")
    total_steps: int = _f(100_000, "environment steps of policy training")
    seed: int = _f(0, "seed of everything (envs, policy, reward model, queries, teacher)")
    n_envs: int = _f(1, "parallel environment copies")
    max_episode_steps: int | None = _f(None, "cut episodes at this length (None: env default)")
    net_arch: tuple[int, ...] = _f((256, 256), "policy and value hidden layers")
    batch_size: int = _f(256, "SAC minibatch size")
    learning_starts: int = _f(1000, "SAC random-action steps before training")
    buffer_size: int = _f(1_000_000, "SAC replay buffer capacity")
    n_steps: int = _f(2048, "PPO rollout length per environment")
    reward_hidden: tuple[int, ...] = _f((256, 256), "reward net hidden layers")
    ensemble_size: int = _f(3, "reward ensemble members")
    reward_output: str = _f("tanh", "per-step reward squashing: tanh | none | sigmoid")
    reward_epochs: int = _f(50, "max epochs per reward update (an epoch passes over all labels)")
    reward_val_fraction: float | None = _f(
        None,
        "labels held out to pick the best epoch; None: 0.1 offline, 0 online (every update "
        "then trains --reward-epochs on all labels)",
    )
    reward_batch_size: int = _f(64, "segments (or pairs) per reward batch")
    dataset: str | None = _f(None, "offline: rated dataset (.parquet)")
    preferences: str | None = _f(None, "offline: preference pairs (.parquet), alone (bt) or mixed")
    preference_weight: float = _f(1.0, "weight of the Bradley-Terry loss in mixed training")
    budget: int = _f(100, "online: total ratings to ask for")
    per_round: int = _f(10, "online: ratings asked per round")
    preference_budget: int = _f(
        0,
        "online: preference pairs asked for besides the ratings (rating methods only); the "
        "reward learns from both, Bradley-Terry weighted by --preference-weight",
    )
    schedule: str = _f("r4", "online: r4 (gaps 1,1,2,3,3,3,4.. x unit) | interval | explicit")
    schedule_unit: int = _f(10_000, "online: r4 gap unit, or the interval between rounds")
    schedule_steps: tuple[int, ...] = _f((), "online: explicit env steps of the rounds")
    horizon: int = _f(50, "online: segment length in env steps")
    candidate_episodes: int = _f(50, "online: candidates come from the last N episodes")
    candidate_stride: int = _f(10, "online: steps between candidate window starts")
    candidate_factor: int = _f(10, "online: candidates scored per query (non-stratified)")
    selector: str = _f(
        "auto",
        "online: uniform | disagreement | entropy | stratified (ratings only); "
        "auto = stratified for ratings, entropy for preference pairs",
    )
    n_classes: int = _f(4, "online teacher: rating levels")
    coarse_classes: int = _f(
        0, "online teacher: switch to this many classes after --switch-after ratings (0: never)"
    )
    switch_after: int = _f(40, "online teacher: ratings on the fine scale before the switch")
    rating_boundaries: tuple[float, ...] | None = _f(
        None,
        "online teacher: R4's hand-set class boundaries on the segment return rescaled to a "
        "1000-step episode (e.g. 0,30,60,100,200,300,400,500,600,800,1000); replaces "
        "--classes/--rating-range",
    )
    rating_range: tuple[float, float] | None = _f(
        None, "online teacher: segment-return range split into equal bins (dmc: 0..horizon)"
    )
    label_noise: float = _f(
        0.0, "online teacher: probability of a random rating (bt: of a flipped preference)"
    )
    preference_equal_threshold: float = _f(
        0.0,
        "online preference teacher: answer 'equally preferable' (0.5) when the two segment "
        "returns differ by less than this (B-Pref's equal teacher). 0 is B-Pref's oracle, which "
        "credits an exact tie to the first segment: on sparse tasks (finger-spin) most pairs are "
        "ties at 0, so a tiny value such as 1e-6 turns that noise into 'equal' labels",
    )
    pretrain_steps: int = _f(0, "online: PEBBLE state-entropy reward until the first update")
    eval_every: int = _f(10_000, "env steps between evaluations")
    eval_episodes: int = _f(5, "episodes per evaluation")
    checkpoint_every: int = _f(10_000, "env steps between checkpoints (also after each round)")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """The configuration stored in a run's ``config.json``, fields added since filled in as
        that run used them (see :func:`_with_defaults`), so ``--resume`` accepts older runs."""
        return cls.from_dict(_with_defaults(json.loads(Path(path).read_text())))

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RunError(f"unknown configuration fields {unknown}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def validate(self) -> None:
        """Raise :class:`RunError` for options that do not fit together."""
        checks = [
            (self.algo in ALGOS, f"unknown algo {self.algo!r}; choose one of {list(ALGOS)}"),
            (
                self.method in REWARD_METHODS,
                f"unknown method {self.method!r}; choose one of {list(REWARD_METHODS)}",
            ),
            (self.mode in MODES, f"unknown mode {self.mode!r}; choose one of {list(MODES)}"),
            (self.total_steps >= 1, f"total_steps must be >= 1, got {self.total_steps}"),
            (self.n_envs >= 1, f"n_envs must be >= 1, got {self.n_envs}"),
            (self.eval_every >= 1 and self.eval_episodes >= 1, "eval_every/eval_episodes >= 1"),
            (
                self.reward_val_fraction is None or 0.0 <= self.reward_val_fraction < 1.0,
                f"reward_val_fraction must be in [0, 1), got {self.reward_val_fraction}",
            ),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}: {SCHEDULES}"),
            (
                self.selector in (*SELECTORS, "auto"),
                f"unknown selector {self.selector!r}: {(*SELECTORS, 'auto')}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise RunError(message)
        self._validate_preference_budget()
        self._validate_equal_threshold()
        self._validate_method_settings()
        if self.method == "oracle":
            return
        if self.mode == "offline":
            if self.dataset is None and self.preferences is None:
                raise RunError("offline training needs --dataset (ratings) or --preferences")
            if self.method == "bt" and self.preferences is None:
                raise RunError("method bt learns from --preferences (a preference dataset)")
            if self.method != "bt" and self.dataset is None:
                raise RunError(f"method {self.method} learns from --dataset (rated segments)")
        else:
            if self.method == "bt" and self.selector not in (*PAIR_SELECTORS, "auto"):
                raise RunError(
                    f"selector {self.selector!r} picks segments to rate; preference pairs are "
                    f"chosen by one of {list(PAIR_SELECTORS)}"
                )
            bounds = self.rating_boundaries
            if bounds is not None and (
                len(bounds) < 3 or any(b <= a for a, b in zip(bounds, bounds[1:], strict=False))
            ):
                raise RunError(
                    f"--rating-boundaries {list(bounds)} must be at least 3 strictly increasing "
                    "numbers (the outer two document the range)"
                )
            if bounds is not None and self.coarse_classes:
                raise RunError("--coarse-classes works with --classes, not --rating-boundaries")
            if self.coarse_classes and (
                self.coarse_classes < 2
                or self.coarse_classes >= self.n_classes
                or self.n_classes % self.coarse_classes
            ):
                raise RunError(
                    f"--coarse-classes {self.coarse_classes} must be >= 2, fewer than --classes "
                    f"{self.n_classes} and divide it (coarse edges must be fine edges)"
                )
            if self.dataset is not None or self.preferences is not None:
                raise RunError("online runs collect their own labels: drop --dataset")

    def _validate_method_settings(self) -> None:
        """Unknown keys would otherwise fail only at the first reward update, rounds in."""
        if not self.method_settings:
            return
        spec = ",".join(f"{k}={v}" for k, v in self.method_settings.items())
        if self.method == "oracle":
            raise RunError(f"--method oracle[{spec}]: the oracle has no settings")
        try:
            method_config(self.method, **self.method_settings)
        except (TrainingError, TypeError) as err:
            raise RunError(f"--method {self.method}[{spec}]: {err}") from None

    def _validate_equal_threshold(self) -> None:
        """The tie threshold belongs to the online preference teacher; elsewhere it would be
        silently ignored, so it is refused."""
        value = self.preference_equal_threshold
        name = f"preference_equal_threshold={value} (--preference-equal-threshold)"
        if not value >= 0.0:
            raise RunError(f"{name} must be >= 0")
        asks_pairs = self.method == "bt" or self.preference_budget > 0
        if value > 0.0 and not (self.mode == "online" and asks_pairs):
            raise RunError(
                f"{name} sets the online preference teacher; this run asks for no pairs "
                "(use --method bt or --preference-budget with --mode online)"
            )

    def _validate_preference_budget(self) -> None:
        """Pairs beside ratings: online, a rating method, and at least one pair every round.

        A round without pairs would train on ratings alone there, so a budget smaller than the
        rounds is refused rather than silently spread thin.
        """
        n = self.preference_budget
        if n == 0:
            return
        name = f"preference_budget={n} (--preference-budget)"
        if n < 0:
            raise RunError(f"{name} must be >= 0")
        if self.mode != "online" or self.method == "oracle":
            raise RunError(
                f"{name} asks for pairs during an online run; mode {self.mode!r} with method "
                f"{self.method!r} asks for none (offline: mix with --preferences instead)"
            )
        if self.method == "bt":
            raise RunError(
                f"{name} asks for pairs besides ratings, but method 'bt' learns from pairs alone "
                "(its budget is --budget): choose a rating method (r4, rbrl, multitask, "
                "regression) or set it to 0"
            )
        rounds = _round_count(self)
        if rounds is not None and n < rounds:
            raise RunError(
                f"{name} cannot give each of the {rounds} feedback rounds a pair: ask for at "
                f"least {rounds} pairs, or fewer rounds (--budget / --per-round)"
            )


# -- checks before training ------------------------------------------------------------------
def _env_dims(config: RunConfig) -> tuple[int, int]:
    env = make_env(config.env_id)
    try:
        if not isinstance(env.action_space, spaces.Box):
            raise RunError(f"{config.env_id} has {env.action_space}: continuous actions needed")
        if not isinstance(env.observation_space, spaces.Box):
            raise RunError(f"{config.env_id} observations must be a flat Box")
        return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    finally:
        env.close()


def _load_offline(config: RunConfig, dims: tuple[int, int]):
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


def _build_schedule(config: RunConfig) -> Schedule:
    if config.schedule == "r4":
        return Schedule.r4(config.budget, config.per_round, config.schedule_unit)
    if config.schedule == "interval":
        return Schedule.interval(config.budget, config.per_round, config.schedule_unit)
    return Schedule.explicit(tuple(config.schedule_steps), config.budget)


def _schedule(config: RunConfig) -> Schedule:
    schedule = _build_schedule(config)
    schedule.check_fits(config.total_steps, config.pretrain_steps)
    return schedule


def _round_count(config: RunConfig) -> int | None:
    """Feedback rounds of the run, or None when the schedule is invalid (reported later)."""
    try:
        return len(_build_schedule(config).steps)
    except ScheduleError:
        return None


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


def _teacher_source(config: RunConfig) -> TeacherSource | PreferenceTeacherSource:
    """The simulated teacher of an online run: it rates (or compares) by the true return."""
    rng = np.random.default_rng(config.seed + 1)
    if config.method == "bt":
        return PreferenceTeacherSource(_preference_teacher(config), rng)
    noise = (UniformRelabel(config.label_noise),) if config.label_noise else ()
    bins = _teacher_bins(config)
    teacher = RatingTeacher(bins, noise)
    if not config.coarse_classes:
        return TeacherSource(teacher, rng)
    step = config.n_classes // config.coarse_classes
    coarse = Bins(bins.edges[step - 1 :: step], 1.0, "equal_width", {"n": config.coarse_classes})
    return TeacherSource(DynamicRatingTeacher(teacher, coarse, config.switch_after), rng)


def _preference_teacher(config: RunConfig) -> PreferenceTeacher:
    """B-Pref's oracle with ``label_noise`` as its mistake rate and the run's tie threshold."""
    return PreferenceTeacher(
        mistake=config.label_noise, equal_threshold=config.preference_equal_threshold
    )


def _selector(config: RunConfig, source):
    if config.method == "bt":
        return PairSelector(_pair_rule(config))
    name = "stratified" if config.selector == "auto" else config.selector
    return make_selector(name, source.scale.n)


def _pair_rule(config: RunConfig) -> str:
    """How pairs are picked: --selector when it can pick pairs, else entropy (B-Pref's best)."""
    return config.selector if config.selector in PAIR_SELECTORS else "entropy"


def _channels(
    config: RunConfig, source: RatingSource | PreferenceSource, schedule: Schedule, run_dir: Path
) -> list[FeedbackChannel]:
    """The run's kinds of feedback: the method's own, plus pairs when preference_budget > 0.

    The pairs' teacher is :func:`_preference_teacher`, on its own
    random stream (seed + 3), so adding pairs leaves the rating teacher's answers unchanged.
    """
    meta = {"env_id": config.env_id}
    store = FeedbackStore.load(run_dir / "feedback.parquet", meta, remap_hook(source))
    name = "pairs" if config.method == "bt" else "ratings"
    channels = [FeedbackChannel(source, _selector(config, source), store, schedule.counts, name)]
    if config.preference_budget > 0:
        teacher = _preference_teacher(config)
        pair_source = PreferenceTeacherSource(teacher, np.random.default_rng(config.seed + 3))
        pairs = FeedbackStore.load(run_dir / "feedback_pairs.parquet", meta)
        counts = schedule.share(config.preference_budget).counts
        channels.append(
            FeedbackChannel(pair_source, PairSelector(_pair_rule(config)), pairs, counts, "pairs")
        )
    return channels


def _records_states(config: RunConfig, channels: Sequence[FeedbackChannel]) -> bool:
    """Whether training episodes keep simulator states: when some channel's source wants them
    (people rate clips in the app) and the environment has them (MuJoCo: Gymnasium or DMC).
    Otherwise nobody looks at them, and reading them every step would cost for nothing."""
    if not any(wants_states(c.source) for c in channels):
        return False
    probe = make_env(config.env_id)
    try:
        return has_physics_state(probe)
    finally:
        probe.close()


def _env_factory(config: RunConfig, record_states: bool) -> Callable[[], gym.Env]:
    """Builds one training sub-env; with ``record_states`` its simulator state is readable
    through ``env_method("physics_state")`` (what the episode recorder asks for)."""
    kwargs = (
        {} if config.max_episode_steps is None else {"max_episode_steps": config.max_episode_steps}
    )

    def build() -> gym.Env:
        env = make_env(config.env_id, **kwargs)
        return PhysicsStateWrapper(env) if record_states else env

    return build


def _source_rngs(channels: Sequence[FeedbackChannel]) -> list[np.random.Generator | None]:
    """Each channel's source's random stream (None for a source without one, e.g. people)."""
    rngs = [getattr(c.source, "rng", None) for c in channels]
    return [r if isinstance(r, np.random.Generator) else None for r in rngs]


def _restore_source_rngs(channels: Sequence[FeedbackChannel], state: dict) -> None:
    """Put every source's stream back where the checkpoint left it (older ones: one stream)."""
    saved = state.get("source_rngs", [state.get("source_rng")])
    for rng, stream in zip(_source_rngs(channels), saved, strict=False):
        if rng is not None and stream is not None:
            rng.bit_generator.state = stream


def _label_counts(data: Sequence[Labels | None]) -> dict[str, int]:
    """The summary's label counts: ratings and pairs learned from, and both together."""
    ratings = sum(len(d) for d in data if isinstance(d, RatedSegments))
    pairs = sum(len(d) for d in data if isinstance(d, PreferencePairs))
    return {"labels_used": ratings + pairs, "ratings_used": ratings, "pairs_used": pairs}


def _prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool, overwrite: bool) -> None:
    stored = run_dir / "config.json"
    if resume:
        if not stored.exists():
            raise RunError(f"{run_dir} is not a run folder (no config.json) to resume")
        old = _with_defaults(json.loads(stored.read_text()))
        new = config.to_dict()
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if differ:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ)
            raise RunError(f"{run_dir} was run with another configuration ({detail})")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunError(f"{run_dir} is not empty; pass --resume to continue or --overwrite")
        if not stored.exists():
            raise RunError(f"{run_dir} is not a ratingrl run folder: refusing to delete it")
        shutil.rmtree(run_dir)


def _with_defaults(stored: dict) -> dict:
    """A stored config.json with every field it lacks set to that field's default.

    A field added after a run was started is absent from its config.json; the run used what is
    now the default, so resuming it must not count that as a changed configuration.
    """
    defaults = RunConfig().to_dict()
    if "method_settings" not in stored and stored.get("method") == "multitask":
        # such runs predate method settings and trained multi-task with that era's alpha = 1/H
        defaults["method_settings"] = {"alpha": None}
    return {**{k: v for k, v in defaults.items() if k not in stored}, **stored}


# -- building blocks -------------------------------------------------------------------------
def _trainer_config(config: RunConfig) -> TrainerConfig:
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


def _offline_reward(config: RunConfig, rated, pairs) -> tuple[RewardEnsemble, dict]:
    trainer = _trainer_config(config)
    if rated is not None and pairs is not None:
        method = _method(config, "r4" if config.method == "bt" else config.method)
        result = train_mixed(
            rated, pairs, method, trainer, preference_weight=config.preference_weight
        )
    else:
        result = train_reward_model(rated or pairs, _method(config), trainer)
    return result.model, {"val_score": result.best_val_score, "epochs": len(result.history)}


R4_ONLINE_GROUPS = 10
"""R4's online batches hold 10 groups (one segment per class each); offline ones 64."""


def _method(config: RunConfig, name: str | None = None):
    """The settings of method ``name`` (default: the run's), with ``method_settings`` applied
    when it is the run's own method (the Bradley-Terry half of a mixed run keeps its defaults)."""
    name = name or config.method
    return method_config(name, **(config.method_settings if name == config.method else {}))


def _online_method(config: RunConfig):
    """The method's settings for online updates: R4 uses its online batch of 10 groups
    (unless ``method_settings`` names ``groups_per_batch``).

    With 64 groups of one segment per class an R4 batch holds 4-6x the segments of the other
    methods' batches, which made each online update ~6x slower than RbRL's (127 s against
    21 s of reward training in a 100k-step PPO run) for no gain in the policy.
    """
    method = _method(config)
    if isinstance(method, R4Config) and "groups_per_batch" not in config.method_settings:
        method = replace(method, groups_per_batch=R4_ONLINE_GROUPS)
    return method


def _updater(config: RunConfig) -> RewardUpdater:
    """Train on every channel's labels: ratings and pairs together when both are learnable.

    Ratings and pairs together go to :func:`train_mixed` (the rating method's loss plus
    ``preference_weight`` x Bradley-Terry); either alone trains with its own method (pairs with
    Bradley-Terry), e.g. while the ratings still hold one class. Warm-started from ``model``.
    """
    method, trainer = _online_method(config), _trainer_config(config)

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
        else:
            result = train_reward_model(pairs, _method(config, "bt"), seeded, model=model)
        row = {
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "loss": result.history[-1]["loss"],
        }
        if trainer.val_fraction > 0:  # without a split the "score" is only the negated loss
            row["val_score"] = result.best_val_score
        return result.model, {**row, **mixed}

    return update


def _algorithm(config: RunConfig, env) -> BaseAlgorithm:
    policy_kwargs = {"net_arch": list(config.net_arch)}
    common = {"seed": config.seed, "device": "cpu", "verbose": 0, "policy_kwargs": policy_kwargs}
    if config.algo == "sac":
        return SAC(
            "MlpPolicy",
            env,
            batch_size=config.batch_size,
            learning_starts=config.learning_starts,
            buffer_size=config.buffer_size,
            **common,
        )
    return PPO("MlpPolicy", env, n_steps=config.n_steps, **common)


def _logger(run_dir: Path, start: int) -> Logger:
    suffix = "" if start == 0 else f".resume{start}"
    formats = [make_output_format("csv", str(run_dir), suffix)]
    try:
        import tensorboard  # noqa: F401

        formats.append(make_output_format("tensorboard", str(run_dir / "tb"), suffix))
    except ImportError:
        pass
    return Logger(str(run_dir), formats)


@dataclass(frozen=True)
class _RunTiming:
    """Env steps trained and time spent training them, summed over a run's sessions.

    Stored in every checkpoint, so a run resumed after a kill reports the speed of all its
    steps; steps trained after the last checkpoint are trained again and counted once.
    ``busy`` excludes evaluation; ``reward_update_s`` is the part spent training the reward.
    """

    steps: int = 0
    busy_s: float = 0.0
    busy_cpu_s: float = 0.0
    reward_update_s: float = 0.0


class _Monitor(BaseCallback):
    """Progress bar (steps/s, labels, latest true/learned return) and periodic checkpoints."""

    def __init__(self, progress, task, status, checkpoint, every: int, start: int) -> None:
        super().__init__()
        self.progress, self.task, self.status = progress, task, status
        self.checkpoint, self.every = checkpoint, every
        self._next = (start // every + 1) * every
        self._t0, self._s0 = time.perf_counter(), start

    def _on_step(self) -> bool:
        if self.n_calls % 50 == 0:
            rate = (self.num_timesteps - self._s0) / max(time.perf_counter() - self._t0, 1e-9)
            self.progress.update(
                self.task,
                completed=self.num_timesteps,
                status=f"{rate:,.0f} steps/s {self.status()}",
            )
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps >= self._next:
            self.checkpoint()
            self._next = (self.num_timesteps // self.every + 1) * self.every


def _log_eval(logger: Logger, result: dict) -> None:
    logger.record("eval/env_steps", result["env_steps"])
    logger.record("eval/true_return", result["true_return"]["mean"])
    logger.record("eval/true_return_std", result["true_return"]["std"])
    if result["learned_return"] is not None:
        logger.record("eval/learned_return", result["learned_return"]["mean"])
    logger.record("eval/episode_length", result["episode_length"])
    logger.dump(result["env_steps"])


def _stats(result: dict | None, key: str):
    return None if result is None else result[key]


# -- the run ---------------------------------------------------------------------------------
def check(config: RunConfig) -> dict:
    """Run every check :func:`train` makes before it touches a run folder; return the plan.

    For a sweep this catches a typo or a schedule that does not fit before hours of compute:
    the environment is built once (its shapes), offline datasets are read and matched to it,
    and an online run's schedule and simulated teacher are constructed.
    """
    config.validate()
    dims = _env_dims(config)
    if config.mode == "offline" and config.method != "oracle":
        _load_offline(config, dims)
    plan: dict = {"env_id": config.env_id, "obs_dim": dims[0], "act_dim": dims[1]}
    if config.method != "oracle":
        method = _online_method(config) if config.mode == "online" else _method(config)
        plan["method"] = dataclasses.asdict(method)
    if config.mode == "online" and config.method != "oracle":
        plan["schedule"] = _schedule(config).to_dict()
        teacher = _teacher_source(config).teacher
        plan["teacher"] = teacher.to_dict() if hasattr(teacher, "to_dict") else repr(teacher)
    return plan


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    source: RatingSource | PreferenceSource | None = None,
    progress: bool = True,
) -> dict:
    """Train a policy as ``config`` says, in ``run_dir``; returns (and writes) the summary.

    ``source`` replaces the simulated teacher of online runs (e.g. the rating app's source; a
    :class:`~ratingrl.feedback.preference_source.PreferenceSource` for ``method="bt"``). The
    pairs of ``preference_budget`` always come from the simulated teacher, so they cannot be
    combined with a ``source``. A source that wants simulator states (``wants_states``, e.g.
    the app's, whose clips replay them) gets queries carrying them, where the env has them.
    ``resume`` continues the run in ``run_dir`` from its last checkpoint, keeping every label.
    ``overwrite`` replaces an existing run folder; ``progress`` shows a rich progress bar.
    """
    run_dir = Path(run_dir)
    config.validate()
    dims = _env_dims(config)
    rated, pairs = (None, None)
    if config.mode == "offline" and config.method != "oracle":
        rated, pairs = _load_offline(config, dims)
    online = config.mode == "online" and config.method != "oracle"
    schedule = _schedule(config) if online else None
    if online and source is None:
        source = _teacher_source(config)
    elif online and config.preference_budget > 0:
        raise RunError(
            f"preference_budget={config.preference_budget} (--preference-budget): its pairs "
            "come from the simulated teacher and would be mixed with your source's labels; "
            "set it to 0 with a source of your own (e.g. --ratings-db)"
        )
    _prepare_run_dir(run_dir, config, resume, overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_bytes(run_dir / "config.json", json.dumps(config.to_dict(), indent=2).encode())

    checkpoint = find_checkpoint(run_dir) if resume else None
    state = load_state(checkpoint) if checkpoint else {}
    channels: list[FeedbackChannel] = []
    if online:
        channels = _channels(config, source, schedule, run_dir)
        _restore_source_rngs(channels, state)
        teacher = getattr(source, "teacher", None)
        if isinstance(teacher, DynamicRatingTeacher) and resume:
            # every stored label came from this teacher: it has rated at least that many
            stored = len(channels[0].store)
            teacher.rated = max(teacher.rated, stored, int(state.get("teacher_rated", 0)))
    record_states = _records_states(config, channels)
    venv = make_vec_env(
        _env_factory(config, record_states),
        config.n_envs,
        seed=config.seed + state.get("starts", 0),
    )
    recorder = EpisodeRecorder(
        config.n_envs, config.candidate_episodes, record_states=record_states
    )
    if "recorder" in state:
        recorder.load_state(state["recorder"])
    defer = config.algo == "ppo"
    reward_env = LearnedRewardVecEnv(
        venv, None if config.method == "oracle" else zero_reward, recorder=recorder, defer=defer
    )

    reward_model: RewardEnsemble | None = None
    reward_log: dict = {}
    if checkpoint is not None and (checkpoint / "reward_model.pt").exists():
        reward_model, _ = RewardEnsemble.load(checkpoint / "reward_model.pt")
    elif rated is not None or pairs is not None:
        reward_model, reward_log = _offline_reward(config, rated, pairs)
        reward_model.save(run_dir / "reward_model.pt", **reward_log)
    if reward_model is not None:
        reward_env.reward_fn = reward_model.predict_rewards
    elif online and config.pretrain_steps > 0:
        reward_env.reward_fn = StateEntropyReward(dims[0])

    if checkpoint is not None:
        algo_cls = SAC if config.algo == "sac" else PPO
        algo = algo_cls.load(checkpoint / "policy.zip", env=reward_env, device="cpu")
        if (checkpoint / "replay_buffer.pkl").exists():
            algo.load_replay_buffer(checkpoint / "replay_buffer.pkl")
        algo._last_obs = None  # the environments restart: force a reset
        from ratingrl.rl.checkpoint import set_rng_state

        set_rng_state(state["rng"])
    else:
        algo = _algorithm(config, reward_env)
    start_steps = int(algo.num_timesteps)
    starts = state.get("starts", 0) + (1 if resume else 0)
    algo.set_logger(_logger(run_dir, starts))

    history: list[dict] = list(state.get("eval_history", []))
    wall_before = float(state.get("wall_time_s", 0.0))
    query_rng = np.random.default_rng(config.seed + 2)
    if "query_rng" in state:
        query_rng.bit_generator.state = state["query_rng"]

    loop: OnlineFeedback | None = None
    if online:
        loop = OnlineFeedback(
            schedule=schedule,
            channels=channels,
            updater=_updater(config),
            recorder=recorder,
            reward_env=reward_env,
            horizon=config.horizon,
            rng=query_rng,
            candidate_stride=config.candidate_stride,
            candidate_factor=config.candidate_factor,
            model=reward_model,
        )
        if reward_model is None:
            loop.trained_on = loop.trained_retracted = 0
        else:  # checkpoints from before label retraction: nothing was withdrawn then
            loop.trained_on = int(state.get("trained_on", 0))
            loop.trained_retracted = int(state.get("trained_retracted", 0))

    session_start = time.perf_counter()
    # the training time of every earlier session (resumes included), so that the summary's
    # speed and reward-update time describe the whole run, not its last session
    timing = _RunTiming(**state.get("timing", {}))
    learn_start, learn_cpu = time.perf_counter(), time.process_time()
    run_timing: _RunTiming | None = None  # set once training ends: later work is not training

    def timing_now() -> _RunTiming:
        if run_timing is not None:
            return run_timing
        return _RunTiming(
            steps=timing.steps + int(algo.num_timesteps) - start_steps,
            busy_s=timing.busy_s + time.perf_counter() - learn_start - evaluator.seconds,
            busy_cpu_s=timing.busy_cpu_s + time.process_time() - learn_cpu - evaluator.cpu_seconds,
            reward_update_s=timing.reward_update_s
            + (loop.update_seconds if loop is not None else 0.0),
        )

    def current_reward():
        model = loop.reward_model if loop is not None else reward_model
        return None if model is None else model.predict_rewards

    def write_checkpoint() -> None:
        model = loop.reward_model if loop is not None else reward_model
        save_checkpoint(
            run_dir,
            algo,
            {
                "rng": rng_state(),
                "query_rng": query_rng.bit_generator.state,
                "source_rngs": [
                    None if r is None else r.bit_generator.state for r in _source_rngs(channels)
                ],
                "teacher_rated": getattr(getattr(source, "teacher", None), "rated", 0),
                "recorder": recorder.state(),
                "eval_history": history,
                "trained_on": loop.trained_on if loop is not None else 0,
                "trained_retracted": loop.trained_retracted if loop is not None else 0,
                "wall_time_s": wall_before + time.perf_counter() - session_start,
                "timing": asdict(timing_now()),
                "starts": starts,
            },
            model,
        )

    evaluator = PeriodicEvaluation(
        lambda a, fn: evaluate(
            a,
            config.env_id,
            config.eval_episodes,
            config.seed + 10_000,
            fn,
            config.max_episode_steps,
        ),
        config.eval_every,
        current_reward,
        history,
    )

    def status() -> str:
        last = history[-1] if history else None
        labels = loop.labels if loop is not None else (len(rated) if rated is not None else 0)
        true = f"{last['true_return']['mean']:.1f}" if last else "-"
        learned = last["learned_return"]["mean"] if last and last["learned_return"] else None
        learned = "-" if learned is None else f"{learned:.1f}"
        return f"| labels {labels} | true {true} | learned {learned}"

    if loop is not None:
        loop.on_update = lambda _: (
            loop.reward_model.save(run_dir / "reward_model.pt"),
            write_checkpoint(),
        )

    remaining = config.total_steps - start_steps
    with progress_bar(progress) as bar:
        task = bar.add_task(
            f"{config.algo} {config.method}", total=config.total_steps, completed=start_steps
        )
        monitor = _Monitor(
            bar, task, status, write_checkpoint, config.checkpoint_every, start_steps
        )
        learned_returns = (
            LearnedEpisodeReturns(recorder, current_reward) if config.method != "oracle" else None
        )
        callbacks = [c for c in (loop, monitor, evaluator, learned_returns) if c is not None]
        if defer:
            callbacks.insert(1 if loop is not None else 0, PPORolloutScorer(reward_env))
        if loop is not None and loop.stale:
            # labels that arrived (or were withdrawn) after the last checkpoint: train first
            loop.init_callback(algo)
            loop.update_reward()
        if remaining > 0:
            algo.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=False)
        run_timing = timing_now()
    reward_env.close()
    final = evaluate(
        algo,
        config.env_id,
        config.eval_episodes,
        config.seed + 10_000,
        current_reward(),
        config.max_episode_steps,
    )
    final["env_steps"] = int(algo.num_timesteps)
    if history and history[-1]["env_steps"] == final["env_steps"]:
        # SAC trains once more after the last periodic evaluation: the final policy wins
        history[-1] = final
    else:
        history.append(final)
    _log_eval(algo.logger, final)  # the CSV's learning curve ends with the summary's numbers
    algo.save(run_dir / "policy.zip")
    write_checkpoint()
    trained, busy, busy_cpu = run_timing.steps, run_timing.busy_s, run_timing.busy_cpu_s
    best = max(history, key=lambda r: r["true_return"]["mean"])
    summary = {
        "true_return_final": final["true_return"],
        "true_return_best": best["true_return"],
        "learned_return_final": final["learned_return"],
        **_label_counts([c.store.data for c in channels] if online else [rated, pairs]),
        # withdrawn labels (undone in the app) are not in labels_used and freed no budget
        "labels_retracted": sum(c.store.retracted for c in channels),
        "env_steps": int(algo.num_timesteps),
        "wall_time_s": wall_before + time.perf_counter() - session_start,
        "env_steps_per_s": trained / busy if trained > 0 and busy > 0 else None,
        # CPU time does not stretch when other jobs share the machine: compare runs with this
        "env_steps_per_cpu_s": trained / busy_cpu if trained > 0 and busy_cpu > 0 else None,
        "reward_update_s": run_timing.reward_update_s,
        "reward_model": reward_log,
        "evaluations": history,
        "config": config.to_dict(),
    }
    atomic_write_bytes(run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
