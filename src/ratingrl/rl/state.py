"""What a checkpoint holds besides the networks: the run's state, typed and versioned.

Every stateful part of a run gives its own ``state_dict()`` (the feedback sources, the online
loop, the episode recorder); :class:`RunState` gathers them with the run's own counters (starts,
evaluations, timing) and the random streams, so a run resumed after any stop continues where
its last checkpoint left it. Checkpoints written before this class existed (version 1: a plain
dict) are read through :meth:`RunState.from_dict` too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ratingrl.rl.validation import RunError

__all__ = ["RunTiming", "RunState", "STATE_VERSION"]

STATE_VERSION = 2


@dataclass(frozen=True)
class RunTiming:
    """Env steps trained and time spent training them, summed over a run's sessions.

    Stored in every checkpoint, so a run resumed after a kill reports the speed of all its
    steps; steps trained after the last checkpoint are trained again and counted once.
    ``busy`` excludes evaluation; ``reward_update_s`` is the part spent training the reward
    (and relabelling), ``reward_update_cpu_s`` the same in CPU time, ``query_cpu_s`` the CPU
    time spent choosing queries: what a learned reward costs besides its per-step scoring.
    """

    steps: int = 0
    busy_s: float = 0.0
    busy_cpu_s: float = 0.0
    reward_update_s: float = 0.0
    reward_update_cpu_s: float = 0.0
    query_cpu_s: float = 0.0


@dataclass
class RunState:
    """A run's resumable state (besides policy, replay buffer and reward model files).

    ``starts`` counts earlier sessions; ``algorithm_rng`` is the policy library's own random
    state where it keeps one (SBX's JAX key); ``sources`` holds one ``state_dict`` per feedback
    channel, in channel order; ``loop`` is the online loop's; ``evaluations`` the learning
    curve so far; ``wall_time_s`` and ``timing`` sum every earlier session.
    """

    starts: int = 0
    global_rng: dict | None = None
    algorithm_rng: dict | None = None
    query_rng: dict | None = None
    sources: list[dict] = field(default_factory=list)
    loop: dict = field(default_factory=dict)
    recorder: dict | None = None
    evaluations: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    timing: RunTiming = field(default_factory=RunTiming)

    def to_dict(self) -> dict:
        """A plain, picklable dict with its ``version``."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {"version": STATE_VERSION, **data, "timing": asdict(self.timing)}

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        """The state of any version: version 1 was the dict ``train()`` pickled by hand."""
        version = int(data.get("version", 1))
        if version == 1:
            data = _from_v1(data)
        elif version > STATE_VERSION:
            raise RunError(
                f"checkpoint state has version {version}, newer than this ratingrl "
                f"({STATE_VERSION}): upgrade ratingrl to resume it"
            )
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["timing"] = RunTiming(**fields.get("timing", {}))
        return cls(**fields)


def _from_v1(old: dict) -> dict:
    """Version 1's keys mapped onto :class:`RunState` (a missing key: what that code assumed)."""
    streams = old.get("source_rngs", [old.get("source_rng")])
    sources = [{"rng": s} for s in streams]
    if sources and "teacher_rated" in old:
        sources[0]["rated"] = int(old["teacher_rated"])
    return {
        "starts": old.get("starts", 0),
        "global_rng": old.get("rng"),
        "query_rng": old.get("query_rng"),
        "sources": sources,
        "loop": {k: old[k] for k in ("trained_on", "trained_retracted") if k in old},
        "recorder": old.get("recorder"),
        "evaluations": old.get("eval_history", []),
        "wall_time_s": old.get("wall_time_s", 0.0),
        "timing": old.get("timing", {}),
    }
