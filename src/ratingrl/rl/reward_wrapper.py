"""A VecEnv wrapper that hands the learner a learned reward, and records what really happened.

The reward of step t is ``r(s_t, a_t)``: the observation the action was taken on and the action
the environment received. The wrapper remembers ``s_t`` itself (the observation it returned on
the previous step or reset), so with SB3's same-step resets the reset observation of a new
episode is only ever the *first* state of that episode, never the (s, a) of the episode that
just ended. Gymnasium's next-step autoreset never reaches us: SB3's VecEnvs reset in the same
step, and :class:`EpisodeRecorder` stores only real steps.

The environment's reward travels in ``info["env_reward"]`` for evaluation only; SB3's
``Monitor`` (below this wrapper) keeps logging it as ``rollout/ep_rew_mean``.

When the recorder keeps simulator states (people rate the clips: DeepMind Control observations do
not determine the pose, so the app needs the state to show the robot), the wrapper reads every
sub-env's state right after each reset and step, through ``venv.env_method("physics_state")``
(sub-envs wrapped in :class:`~ratingrl.feedback.envs.PhysicsStateWrapper`). After a same-step
reset the sub-env already holds the new episode's reset state, so a state is remembered exactly
like the observation: ``states[t]`` is the simulator state ``obs[t]`` was observed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from ratingrl.feedback.envs import PhysicsStateWrapper
from ratingrl.feedback.rollouts import Episode, segment_episodes
from ratingrl.feedback.segments import SegmentSet

__all__ = ["StepRewardFn", "EpisodeRecorder", "LearnedRewardVecEnv", "zero_reward"]

_PHYSICS_STATE = "physics_state"  # the method PhysicsStateWrapper gives every sub-env

StepRewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(obs [B, obs_dim], acts [B, act_dim]) -> rewards [B]`` in environment action units."""


def zero_reward(obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """The reward before any feedback exists (and without entropy pre-training)."""
    del acts
    return np.zeros(len(obs), dtype=np.float32)


class EpisodeRecorder:
    """The last ``capacity`` finished episodes (obs, actions, true rewards) of every sub-env.

    These are the candidates queries are drawn from. The episode still running in each sub-env
    is never a candidate: a clip people rate should be a finished piece of behaviour.

    ``record_states`` also keeps the simulator state of every step (``Episode.states``), so
    queries cut from the episodes carry states and the rating app can replay the real robot.
    It is off by default: a simulated teacher does not look at clips, and reading the state of
    every sub-env at every step costs time and memory.
    """

    def __init__(self, n_envs: int, capacity: int = 50, *, record_states: bool = False) -> None:
        self.capacity = capacity
        self.record_states = record_states
        self.episodes: deque[Episode] = deque(maxlen=capacity)
        self.next_id = 0
        self._open: list[dict[str, list]] = [self._empty() for _ in range(n_envs)]

    @staticmethod
    def _empty() -> dict[str, list]:
        return {"obs": [], "acts": [], "rewards": [], "states": []}

    def reset(self) -> None:
        """Drop unfinished episodes (the envs were reset)."""
        self._open = [self._empty() for _ in self._open]

    def add(
        self,
        obs: np.ndarray,
        acts: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        states: np.ndarray | None = None,
    ) -> None:
        """Store one vector step: ``obs`` are the observations the actions were taken on and
        ``states`` (``[n_envs, state_dim]``, needed with ``record_states``, ignored without) the
        simulator states those observations were made in."""
        if self.record_states and states is None:
            raise ValueError("this recorder keeps simulator states: add() needs states")
        for i, record in enumerate(self._open):
            record["obs"].append(obs[i])
            record["acts"].append(acts[i])
            record["rewards"].append(rewards[i])
            if self.record_states:
                record["states"].append(states[i])
            if dones[i]:
                self.episodes.append(self._finish(record))
                self.next_id += 1
                self._open[i] = self._empty()

    def _finish(self, record: dict[str, list]) -> Episode:
        return Episode(
            np.asarray(record["obs"], np.float32),
            np.asarray(record["acts"], np.float32),
            np.asarray(record["rewards"], np.float32),
            self.next_id,
            states=np.asarray(record["states"], np.float64) if self.record_states else None,
        )

    def segments(self, horizon: int, stride: int = 1) -> SegmentSet:
        """Every window of ``horizon`` steps (every ``stride`` steps) of the stored episodes."""
        return segment_episodes(list(self.episodes), horizon, stride)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the finished episodes (states included) and the next id."""
        return {"episodes": list(self.episodes), "next_id": self.next_id}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`. A recorder that keeps states drops restored episodes without
        any (from a run that did not record them): one such episode among the candidates would
        strip the states from every window (see ``segment_episodes``)."""
        episodes = state["episodes"]
        if self.record_states:
            episodes = [ep for ep in episodes if ep.states is not None]
        self.episodes = deque(episodes, maxlen=self.capacity)
        self.next_id = int(state["next_id"])


class LearnedRewardVecEnv(VecEnvWrapper):
    """Replace the environment's reward with ``reward_fn(s_t, a_t)``.

    - ``reward_fn=None`` passes the environment's reward through (the oracle run).
    - ``defer=True`` returns 0 and leaves scoring to :class:`~ratingrl.rl.relabel.PPORolloutScorer`,
      which scores a whole rollout in one batch (one forward pass per step costs PPO ~27%).

    ``reward_fn`` is a public attribute: the online loop swaps it (entropy reward, then the
    learned reward) without rebuilding the environment.
    """

    def __init__(
        self,
        venv: VecEnv,
        reward_fn: StepRewardFn | None,
        *,
        recorder: EpisodeRecorder | None = None,
        defer: bool = False,
    ) -> None:
        super().__init__(venv)
        self.reward_fn = reward_fn
        self.recorder = recorder
        self.defer = defer
        self._last_obs: np.ndarray | None = None
        self._last_states: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        if self._records_states and not venv.has_attr(_PHYSICS_STATE):
            raise ValueError(
                "the recorder keeps simulator states: wrap every sub-env in "
                f"{PhysicsStateWrapper.__name__} so venv.env_method({_PHYSICS_STATE!r}) works"
            )

    @property
    def _records_states(self) -> bool:
        return self.recorder is not None and self.recorder.record_states

    def _physics_states(self) -> np.ndarray | None:
        """Every sub-env's simulator state now (that of the observation it just returned), or
        None when nobody keeps states: then no sub-env is asked, and no step pays for it."""
        if not self._records_states:
            return None
        return np.stack(self.venv.env_method(_PHYSICS_STATE)).astype(np.float64)

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._last_obs = np.array(obs, dtype=np.float32, copy=True)
        self._last_states = self._physics_states()
        if self.recorder is not None:
            self.recorder.reset()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        self.venv.step_async(actions)

    def step_wait(self):
        obs, env_rewards, dones, infos = self.venv.step_wait()
        obs_t, actions = self._last_obs, self._actions
        if obs_t is None or actions is None:
            raise RuntimeError("step() before reset(): the wrapper has no current observation")
        env_rewards = np.asarray(env_rewards, dtype=np.float32)
        if self.reward_fn is None:
            rewards = env_rewards
        elif self.defer:
            rewards = np.zeros(self.num_envs, dtype=np.float32)
        else:
            rewards = np.asarray(self.reward_fn(obs_t, actions), dtype=np.float32)
        for i, info in enumerate(infos):
            info["env_reward"] = float(env_rewards[i])
        if self.recorder is not None:
            self.recorder.add(obs_t, actions, env_rewards, dones, self._last_states)
        self._last_obs = np.array(obs, dtype=np.float32, copy=True)
        self._last_states = self._physics_states()  # after a done: the new episode's reset state
        return obs, rewards, dones, infos
