"""Reward networks r(s, a) as one batched ensemble.

The E members of an ensemble are stored as stacked weight tensors ``[E, in, out]`` and run with
one batched matrix multiply per layer, so an ensemble of three costs about one network's worth
of Python overhead. Members can see different inputs (bootstrap resampling trains each member
on its own resample) or the same input (prediction).

Inputs are standardised with statistics fitted on the training segments (stored as buffers, so
they travel with the saved model): observations in MuJoCo tasks span orders of magnitude, and
an unnormalised net spends its first epochs learning the scale.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ratingrl.feedback.io import atomic_path

__all__ = ["RewardNetConfig", "RewardEnsemble", "RewardFn"]

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(state, action, next_state, done) -> rewards``: the signature ``imitation`` uses."""

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": nn.functional.leaky_relu,
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
}
_OUTPUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "none": lambda x: x,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


@dataclass(frozen=True)
class RewardNetConfig:
    """Shape of each ensemble member."""

    hidden: tuple[int, ...] = (256, 256)
    """Widths of the hidden layers."""
    activation: str = "leaky_relu"
    """One of relu, leaky_relu, tanh, elu."""
    output: str = "tanh"
    """Per-step output squashing: tanh (RbRL, PEBBLE), none (R4) or sigmoid."""
    ensemble_size: int = 3
    """Number of members; their mean is the reward, their spread drives queries."""
    use_actions: bool = True
    """r(s, a) when true, r(s) otherwise."""

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} not in {sorted(_ACTIVATIONS)}")
        if self.output not in _OUTPUTS:
            raise ValueError(f"output {self.output!r} not in {sorted(_OUTPUTS)}")
        if self.ensemble_size < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"ensemble_size and hidden widths must be >= 1, got {self}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))


class RewardEnsemble(nn.Module):
    """E reward nets r(s, a), evaluated together."""

    def __init__(self, obs_dim: int, act_dim: int, config: RewardNetConfig, seed: int = 0) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        in_dim = obs_dim + (act_dim if config.use_actions else 0)
        sizes = [in_dim, *config.hidden, 1]
        generator = torch.Generator().manual_seed(seed)
        e = config.ensemble_size
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation
            w = (torch.rand(e, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(e, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self._act = _ACTIVATIONS[config.activation]
        self._out = _OUTPUTS[config.output]

    @property
    def ensemble_size(self) -> int:
        return self.config.ensemble_size

    def _inputs(self, obs: Tensor, acts: Tensor) -> Tensor:
        x = torch.cat([obs, acts], dim=-1) if self.config.use_actions else obs
        return (x - self.input_mean) / self.input_std

    @torch.no_grad()
    def fit_normalizer(self, obs: np.ndarray | Tensor, acts: np.ndarray | Tensor) -> None:
        """Standardise inputs with the mean and std of ``obs``/``acts`` (any leading shape)."""
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(-1, self.obs_dim)
        acts_t = torch.as_tensor(np.asarray(acts), dtype=torch.float32).reshape(-1, self.act_dim)
        x = torch.cat([obs_t, acts_t], -1) if self.config.use_actions else obs_t
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(x.std(0).clamp_min(1e-6))

    def forward_members(self, obs: Tensor, acts: Tensor) -> Tensor:
        """Per-step rewards when member e sees its own inputs: ``obs [E, ..., obs_dim]``.

        Returns ``[E, ...]``.
        """
        lead = obs.shape[:-1]
        x = self._inputs(obs, acts).reshape(lead[0], -1, self.weights[0].shape[1])
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            x = self._act(x) if i < last else self._out(x)
        return x.reshape(lead)

    def forward(self, obs: Tensor, acts: Tensor) -> Tensor:
        """Per-step rewards of every member on shared inputs ``[..., dim]`` -> ``[E, ...]``."""
        e = self.ensemble_size
        return self.forward_members(
            obs.unsqueeze(0).expand(e, *obs.shape), acts.unsqueeze(0).expand(e, *acts.shape)
        )

    def segment_returns(self, obs: Tensor, acts: Tensor) -> Tensor:
        """Predicted (undiscounted) returns of segments ``[..., H, dim]`` -> ``[E, ...]``."""
        return self.forward(obs, acts).sum(-1)

    def weight_tensors(self) -> list[Tensor]:
        """The weight matrices (not biases), each ``[E, in, out]``: what norm penalties see."""
        return list(self.weights)

    # -- numpy conveniences ------------------------------------------------------------------
    @torch.no_grad()
    def predict_returns(self, obs: np.ndarray, acts: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Ensemble-member returns of segments ``[N, H, dim]`` as ``[E, N]`` numpy."""
        outs = []
        for s in range(0, len(obs), batch):
            o = torch.as_tensor(obs[s : s + batch], dtype=torch.float32)
            a = torch.as_tensor(acts[s : s + batch], dtype=torch.float32)
            outs.append(self.segment_returns(o, a))
        return torch.cat(outs, dim=-1).numpy() if outs else np.zeros((self.ensemble_size, 0))

    @torch.no_grad()
    def predict_rewards(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Ensemble-mean per-step reward for any leading shape."""
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        a = torch.as_tensor(np.asarray(acts), dtype=torch.float32)
        return self.forward(o, a).mean(0).numpy()

    def as_reward_fn(self) -> RewardFn:
        """The reward as ``(state, action, next_state, done) -> rewards`` numpy batches."""

        def reward_fn(
            state: np.ndarray, action: np.ndarray, next_state: np.ndarray, done: np.ndarray
        ) -> np.ndarray:
            del next_state, done  # r(s, a) ignores them; kept for interoperability
            return self.predict_rewards(state, action)

        return reward_fn

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, **extra: object) -> None:
        """Save config, dims and weights atomically; ``extra`` (picklable) rides along."""
        payload = {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": asdict(self.config),
            "state_dict": self.state_dict(),
            "extra": extra,
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | Path) -> tuple[RewardEnsemble, dict]:
        """Load a model saved by :meth:`save`; returns ``(model, extra)``."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
            config = RewardNetConfig(**payload["config"])
            model = cls(payload["obs_dim"], payload["act_dim"], config)
            model.load_state_dict(payload["state_dict"])
        except (
            OSError,
            KeyError,
            RuntimeError,
            TypeError,
            EOFError,
            pickle.UnpicklingError,
        ) as err:
            raise ValueError(
                f"{str(path)!r} is not a readable ratingrl reward model: {err}"
            ) from err
        model.eval()
        return model, payload.get("extra", {})
