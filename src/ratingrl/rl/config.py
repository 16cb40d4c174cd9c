"""The configuration of a training run, defined once: fields, help, defaults and checks.

Every option of ``ratingrl train`` is a field of :class:`RunConfig`, with its help text and
default here and nowhere else: the command line generates its options from these fields,
``--config run.json`` reads a saved configuration, ``--set key=value`` sets any field, and
benchmark tracks are dicts of field overrides. A field's ``metadata["flag"]`` gives its option
name where that differs from the field name (``env_id`` is ``--env``).

A run stores its configuration in ``config.json`` with a ``version``. Older files are upgraded
when read (:func:`upgrade_config`): a field added since a run started is filled with the value
that run actually used, so ``--resume`` of an older run continues it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ratingrl.config_fields import described as _f
from ratingrl.feedback.schedules import Schedule, ScheduleError, r4_gaps
from ratingrl.rl.validation import RunError, validate_config

__all__ = [
    "CONFIG_VERSION",
    "RunConfig",
    "RunError",
    "upgrade_config",
    "flag_of",
]

CONFIG_VERSION = 3
"""1: config.json without a version (until 2026-12-03); 2: ``version`` and ``plugins``;
3: R4 and RbRL default to their authors' released loss forms (see :data:`EARLIER_LOSS_FORMS`)."""

EARLIER_LOSS_FORMS = {
    "r4": {"loss_reduction": "sum_per_group", "penalty_params": "weights"},
    "rbrl": {"boundary_gradient": True},
}
"""The loss forms every run of a configuration version below 3 trained with."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; stored as ``config.json`` and compared on ``--resume``."""

    env_id: str = _f("dmc/cartpole-balance", "Gymnasium id or dmc/domain-task", "--env")
    algo: str = _f("sac", "sac | ppo")
    backend: str = _f(
        "sb3",
        "sb3 (Stable-Baselines3, PyTorch) | sbx (its JAX twin: the same algorithms, faster per "
        "CPU second; pip install 'ratingrl[jax]')",
    )
    method: str = _f(
        "r4",
        "reward method: r4 | rbrl | multitask | bt | regression | oracle (the env's reward), or "
        "one registered by a --plugins module; settings in brackets, e.g. 'multitask[alpha=1]'",
    )
    method_settings: dict = _f(
        {},
        "the method's own settings, e.g. {'alpha': 1.0} for multitask or {'kappa': 10} for "
        "rbrl; on the command line write them in brackets after --method",
    )
    plugins: tuple[str, ...] = _f(
        (),
        "modules (dotted names or .py files) imported before the run, e.g. to register a reward "
        "method of your own",
    )
    mode: str = _f("online", "offline (fixed --dataset) | online (queries while training)")
    total_steps: int = _f(100_000, "environment steps of policy training", "--steps")
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
    reward_update_steps: int | None = _f(
        None,
        "online: gradient steps per reward update, whatever the number of labels (epochs run "
        "until this many batches, the last one cut short; replaces --reward-epochs there). "
        "None: --reward-epochs passes over all labels, so updates grow with the labels",
    )
    reward_val_fraction: float | None = _f(
        None,
        "labels held out to pick the best epoch; None: 0.1 offline, 0 online (every update "
        "then trains --reward-epochs on all labels)",
    )
    reward_batch_size: int = _f(64, "segments (or pairs) per reward batch")
    dataset: str | None = _f(None, "offline: rated dataset (.parquet)")
    preferences: str | None = _f(None, "offline: preference pairs (.parquet), alone (bt) or mixed")
    preference_weight: float = _f(1.0, "weight of the Bradley-Terry loss in mixed training")
    budget: int = _f(100, "online: total labels to ask for")
    per_round: int = _f(10, "online: labels asked per round")
    preference_budget: int = _f(
        0,
        "online: preference pairs asked for besides the ratings (rating methods only); the "
        "reward learns from both, Bradley-Terry weighted by --preference-weight",
    )
    schedule: str = _f("r4", "online: r4 (gaps 1,1,2,3,3,3,4.. x unit) | interval | explicit")
    schedule_unit: int | None = _f(
        None,
        "online: r4 gap unit, or the interval between rounds; None: fitted to --steps (R4's "
        "rounds end at 90% of the run, interval rounds at half of it, as RbRL asks early)",
    )
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
    n_classes: int = _f(4, "online teacher: rating levels", "--classes")
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
        None, "online teacher: segment-return range LOW,HIGH split into equal bins (dmc: 0,horizon)"
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

    # -- reading and writing -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready fields plus the ``version`` they were written with."""
        return {"version": CONFIG_VERSION, **json.loads(json.dumps(asdict(self)))}

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` atomically."""
        from ratingrl.feedback.io import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode())

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """The configuration in a ``config.json`` of any version (see :func:`upgrade_config`)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunError(f"cannot read the run configuration {path}: {err}") from None
        return cls.from_dict(upgrade_config(data))

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """A configuration from its dict (``version`` optional); unknown fields are an error."""
        data = {k: v for k, v in data.items() if k != "version"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RunError(f"unknown configuration fields {unknown}; known: {sorted(names)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` (field names as keys), e.g. a benchmark track's overrides."""
        return self.from_dict({**asdict(self), **changes})

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`RunError` for options that do not fit together (no file is read)."""
        validate_config(self)

    @property
    def online(self) -> bool:
        """Whether the run asks for feedback while it trains (oracle runs never do)."""
        return self.mode == "online" and self.method != "oracle"

    def schedule_plan(self) -> Schedule:
        """The rounds of queries this configuration asks for (not yet checked against the run)."""
        rounds = -(-self.budget // max(self.per_round, 1))
        if self.schedule == "r4":
            unit = self.schedule_unit or max(1, int(0.9 * self.total_steps) // sum(r4_gaps(rounds)))
            return Schedule.r4(self.budget, self.per_round, unit)
        if self.schedule == "interval":
            every = self.schedule_unit or max(1, self.total_steps // (2 * rounds))
            return Schedule.interval(self.budget, self.per_round, every)
        return Schedule.explicit(tuple(self.schedule_steps), self.budget)

    def round_count(self) -> int | None:
        """Feedback rounds of the run, or None when the schedule is invalid (reported later)."""
        try:
            return len(self.schedule_plan().steps)
        except ScheduleError:
            return None


def flag_of(name: str) -> str:
    """``--env`` for ``env_id``: the command-line option that sets a configuration field."""
    meta = RunConfig.__dataclass_fields__[name].metadata
    return meta.get("flag", "--" + name.replace("_", "-"))


def upgrade_config(stored: dict) -> dict:
    """A stored ``config.json`` brought to :data:`CONFIG_VERSION`, as that run actually ran.

    Version 1 files (no ``version``) lack fields added after they were written; the run used
    what was then the default, which is today's default except for multi-task's alpha: runs
    from before method settings trained multi-task with alpha = 1/H (``alpha: None``). Runs
    before version 3 trained R4 and RbRL in :data:`EARLIER_LOSS_FORMS` (settings they stored
    themselves win).
    """
    version = int(stored.get("version", 1))
    if version > CONFIG_VERSION:
        raise RunError(
            f"config.json has version {version}, newer than this ratingrl ({CONFIG_VERSION}): "
            "upgrade ratingrl to resume it"
        )
    defaults = {k: v for k, v in RunConfig().to_dict().items() if k != "version"}
    if "method_settings" not in stored and stored.get("method") == "multitask":
        defaults["method_settings"] = {"alpha": None}
    filled = {**{k: v for k, v in defaults.items() if k not in stored}, **stored}
    if version < 3 and filled["method"] in EARLIER_LOSS_FORMS:
        earlier = EARLIER_LOSS_FORMS[filled["method"]]
        filled["method_settings"] = {**earlier, **filled["method_settings"]}
    filled["version"] = CONFIG_VERSION
    return filled
