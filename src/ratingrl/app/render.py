"""Clips for people: replay a segment in MuJoCo offscreen, encode H.264 MP4, cache by segment.

Replay sets the simulator state frame by frame instead of re-running the actions, so a clip shows
exactly the recorded states and not a drifting re-simulation. Where the states come from:

* stored per segment (``states``: ``[H, state_dim]``, from
  :func:`~ratingrl.feedback.envs.get_physics_state`: qpos then qvel for Gymnasium MuJoCo envs,
  ``physics.get_state()`` for DeepMind Control) -- exact for any env;
* otherwise, for Gymnasium MuJoCo envs whose observation starts with ``qpos[k:]`` then ``qvel``
  (HalfCheetah, Hopper, Walker2d, Swimmer, Ant, ...), from the observations. The ``k`` root
  positions left out of the observation (x, or x and y) are rebuilt by integrating the root
  velocity from 0: the body moves on screen as it did, offset to start at the origin. The layout
  is detected once per env by comparing a reset observation with the simulator's state;
* otherwise (DeepMind Control observations do not contain the state), the clip is an honest
  approximation: a bar chart of the observation and action vectors per step. Record states
  to see the robot: pools do (``collect_episodes(record_states=True)``), and so does online
  training when it asks the app for ratings (:class:`~ratingrl.app.source.AppRatingSource`
  wants states, so the loop's episode recorder keeps them).

Rendering runs on one worker thread that owns the environments, because an OpenGL (EGL/OSMesa)
context belongs to the thread that made it. Shadows and reflections are switched off: they cost
5-15x on software rendering and do not help a rater judge behaviour. The worker keeps the frames
of the last few clips, so the variants of one clip (below) are encoded from one replay.

A rater's clip is a *variant* (``ClipSpec.variant``): every queue item, a hidden repeat or a
fresh clip alike, gets its own file, encoded from the clip's frames with an invisible change
seeded by the item's key -- a sparse +-1 dither of the pixel values and a quality setting drawn
around the default (:func:`vary_frames`). A repeat therefore differs from the original in its
bytes, size and ETag as much as any two fresh clips do, and a rater cannot spot it by comparing
files; only by watching it, which is the point of a repeat.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported; osmesa is the fallback

import hashlib  # noqa: E402
import threading  # noqa: E402
from collections import OrderedDict  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

__all__ = [
    "ClipSpec",
    "ClipRenderer",
    "ClipCache",
    "encode_mp4",
    "bar_frames",
    "vary_frames",
    "RenderError",
    "DEFAULT_CRF",
]

DEFAULT_CRF = 25
"""x264's constant rate factor for clips (what imageio's default quality 5 meant before)."""
_CRF_SPREAD = 2  # a variant's CRF is DEFAULT_CRF +- up to this
_DITHER_SHARE = 0.02  # share of pixels a variant moves by one level


class RenderError(RuntimeError):
    """A clip that could not be rendered; the message says which and why."""


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a clip's pixels; its hash names the cache file."""

    key: str  # a hex public id (item or segment): the only thing that goes into the file name
    env_id: str
    obs: np.ndarray
    acts: np.ndarray
    states: np.ndarray | None = None
    width: int = 240
    height: int = 240
    fps: int = 25
    variant: bool = False  # True: this key's own variant of the clip (see the module doc)

    def content_digest(self) -> str:
        """What the frames depend on (not the key): variants of one clip share it."""
        h = hashlib.sha256()
        h.update(f"{self.env_id}|{self.width}|{self.height}|{self.fps}|v1".encode())
        for array in (self.obs, self.acts, self.states):
            if array is not None:
                h.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return h.hexdigest()[:16]

    def digest(self) -> str:
        """What the file depends on besides the key: the frames, and whether it is a variant."""
        if not self.variant:
            return self.content_digest()
        return hashlib.sha256(f"{self.content_digest()}|variant".encode()).hexdigest()[:16]

    def variant_seed(self) -> int:
        """The seed of this key's variant (a hash of the key)."""
        return int.from_bytes(hashlib.sha256(f"variant|{self.key}".encode()).digest()[:8], "big")


def encode_mp4(frames: np.ndarray, fps: int, crf: int = DEFAULT_CRF) -> bytes:
    """H.264 (yuv420p, faststart) MP4 of ``frames`` ``[T, H, W, 3]`` uint8 via imageio-ffmpeg.

    ``crf`` is x264's constant rate factor (lower: better quality, bigger file).
    """
    import tempfile

    import imageio_ffmpeg

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:  # yuv420p needs even sizes
        frames = np.ascontiguousarray(frames[:, : h - h % 2, : w - w % 2])
        h, w = frames.shape[1:3]
    fd, tmp = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            tmp,
            (w, h),
            fps=fps,
            codec="libx264",
            quality=None,
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-crf", str(int(crf)), "-movflags", "+faststart", "-preset", "veryfast"],
        )
        writer.send(None)
        for frame in frames:
            writer.send(frame)
        writer.close()
        return Path(tmp).read_bytes()
    finally:
        Path(tmp).unlink(missing_ok=True)


def bar_frames(obs: np.ndarray, acts: np.ndarray, width: int, height: int) -> np.ndarray:
    """A frame per step drawing observation (blue) and action (orange) values as bars."""
    values = np.concatenate([obs, acts], axis=1)
    scale = np.maximum(np.abs(values).max(axis=0), 1e-6)
    norm = np.clip(values / scale, -1, 1)
    t, d = norm.shape
    frames = np.full((t, height, width, 3), 245, dtype=np.uint8)
    bar_w = max(1, width // max(d, 1))
    mid = height // 2
    frames[:, mid, :, :] = 120
    for j in range(d):
        color = (60, 110, 200) if j < obs.shape[1] else (230, 140, 40)
        x0, x1 = j * bar_w, min(width, (j + 1) * bar_w - 1)
        for i in range(t):
            top = int(mid - norm[i, j] * (mid - 4))
            lo, hi = min(top, mid), max(top, mid)
            frames[i, lo : hi + 1, x0:x1] = color
    return frames


def vary_frames(frames: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """An invisible variant of a clip: ``(frames, crf)`` for :func:`encode_mp4`.

    A fixed sparse pattern (seeded) of pixels moves by one level of 255 in every frame, and the
    rate factor is drawn within +-2 of the default. Nobody sees either, yet the encoder's
    decisions change throughout, so two variants differ in bytes and, by a few percent per
    CRF step, in size -- as two different clips do.
    """
    rng = np.random.default_rng(seed)
    crf = DEFAULT_CRF + int(rng.integers(-_CRF_SPREAD, _CRF_SPREAD + 1))
    height, width = frames.shape[1:3]
    moved = rng.random((height, width)) < _DITHER_SHARE
    step = np.where(rng.random((height, width)) < 0.5, -1, 1) * moved
    varied = frames.astype(np.int16) + step.astype(np.int16)[None, :, :, None]
    return np.clip(varied, 0, 255).astype(np.uint8), crf


class _MujocoReplayer:
    """One environment, set to recorded states and rendered offscreen."""

    def __init__(self, env_id: str, width: int, height: int) -> None:
        import mujoco

        from ratingrl.feedback.envs import make_env

        self.env = make_env(env_id, render_mode="rgb_array", width=width, height=height)
        obs, _ = self.env.reset(seed=0)
        self.unwrapped = self.env.unwrapped
        if not hasattr(self.unwrapped, "set_state") or not hasattr(self.unwrapped, "data"):
            self.env.close()
            raise RenderError(f"{env_id} is not a Gymnasium MuJoCo env")
        viewer = self.unwrapped.mujoco_renderer._get_viewer("rgb_array")
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        model = self.unwrapped.model
        self.nq, self.nv = int(model.nq), int(model.nv)
        self.dt = float(self.unwrapped.dt)
        self.excluded = self._detect_layout(np.asarray(obs, dtype=np.float64))

    def _detect_layout(self, obs: np.ndarray) -> int | None:
        """``k`` such that ``obs[: nq - k] == qpos[k:]`` and the next nv entries are qvel."""
        qpos = np.asarray(self.unwrapped.data.qpos, dtype=np.float64)
        qvel = np.asarray(self.unwrapped.data.qvel, dtype=np.float64)
        for k in range(0, 3):
            n = self.nq - k + self.nv
            if len(obs) >= n and np.allclose(obs[: self.nq - k], qpos[k:], atol=1e-6):
                if np.allclose(obs[self.nq - k : n], qvel, atol=1e-6):
                    return k
        return None

    def states_from_obs(self, obs: np.ndarray) -> np.ndarray:
        if self.excluded is None:
            raise RenderError("observations do not hold the simulator state for this env")
        k = self.excluded
        t = len(obs)
        qpos = np.zeros((t, self.nq))
        qpos[:, k:] = obs[:, : self.nq - k]
        qvel = obs[:, self.nq - k : self.nq - k + self.nv]
        if k:  # rebuild the root position the observation leaves out
            qpos[1:, :k] = np.cumsum(qvel[:-1, :k] * self.dt, axis=0)
        return np.concatenate([qpos, qvel], axis=1)

    def render(self, states: np.ndarray) -> np.ndarray:
        from ratingrl.feedback.envs import set_physics_state

        if states.shape[1] != self.nq + self.nv:
            raise RenderError(
                f"states have {states.shape[1]} columns, expected nq+nv = {self.nq + self.nv}"
            )
        frames = []
        for state in np.asarray(states, dtype=np.float64):
            set_physics_state(self.env, state)
            frames.append(np.asarray(self.env.render(), dtype=np.uint8).copy())
        return np.stack(frames)

    def close(self) -> None:
        self.env.close()


class _DmControlReplayer:
    """A DeepMind Control task, set to recorded ``physics.get_state()`` rows and rendered.

    Renders through dm_control's own ``physics.render`` (camera 0, the suite's standard view,
    which tracks the body) with shadows and reflections off. Its observations do not hold the
    state, so without stored states there is nothing to replay (``excluded`` is None).
    """

    excluded = None

    def __init__(self, env_id: str, width: int, height: int) -> None:
        from ratingrl.feedback.envs import dm_control_physics, make_env

        self.env = make_env(env_id)
        self.env.reset(seed=0)
        self.physics = dm_control_physics(self.env)
        if self.physics is None:
            self.env.close()
            raise RenderError(f"{env_id} is not a DeepMind Control task")
        self.width, self.height = width, height
        self.state_dim = int(self.physics.get_state().shape[0])

    def render(self, states: np.ndarray) -> np.ndarray:
        from ratingrl.feedback.envs import set_physics_state

        if states.shape[1] != self.state_dim:
            raise RenderError(
                f"states have {states.shape[1]} columns, this task's physics state has "
                f"{self.state_dim}"
            )
        frames = []
        for state in np.asarray(states, dtype=np.float64):
            set_physics_state(self.env, state)
            frame = self.physics.render(
                height=self.height,
                width=self.width,
                camera_id=0,
                render_flag_overrides={"shadow": False, "reflection": False},
            )
            frames.append(np.asarray(frame, dtype=np.uint8).copy())
        return np.stack(frames)

    def close(self) -> None:
        self.env.close()


_Replayer = _MujocoReplayer | _DmControlReplayer


class ClipRenderer:
    """Renders clips on a single worker thread that owns one replayer per (env, size)."""

    def __init__(self, frame_cache_bytes: int = 64 << 20) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ratingrl-render")
        self._replayers: dict[tuple[str, int, int], _Replayer | None] = {}
        # frames of the last clips replayed (worker thread only), up to frame_cache_bytes:
        # the raters of one clip ask for their variants close together, the queue's order
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_limit = frame_cache_bytes

    def _replayer(self, env_id: str, width: int, height: int) -> _Replayer | None:
        from ratingrl.feedback.envs import DMC_PREFIX

        key = (env_id, width, height)
        if key not in self._replayers:
            kind = _DmControlReplayer if env_id.startswith(DMC_PREFIX) else _MujocoReplayer
            try:
                self._replayers[key] = kind(env_id, width, height)
            except Exception:  # not a MuJoCo env we can replay: draw bars instead
                self._replayers[key] = None
        return self._replayers[key]

    def _frames(self, spec: ClipSpec) -> np.ndarray:
        replayer = self._replayer(spec.env_id, spec.width, spec.height)
        obs = np.asarray(spec.obs, dtype=np.float64)
        if replayer is not None:
            if spec.states is not None:
                return replayer.render(np.asarray(spec.states, dtype=np.float64))
            if replayer.excluded is not None:
                return replayer.render(replayer.states_from_obs(obs))
        return bar_frames(obs, np.asarray(spec.acts), spec.width, spec.height)

    def _cached_frames(self, spec: ClipSpec) -> np.ndarray:
        key = spec.content_digest()
        if key in self._recent:
            self._recent.move_to_end(key)
            return self._recent[key]
        frames = self._frames(spec)
        frames.setflags(write=False)
        if frames.nbytes <= self._recent_limit:
            self._recent[key] = frames
            while sum(f.nbytes for f in self._recent.values()) > self._recent_limit:
                self._recent.popitem(last=False)
        return frames

    def frames(self, spec: ClipSpec) -> np.ndarray:
        """``[H, height, width, 3]`` uint8 frames of the clip (the same for all its variants)."""
        return self._executor.submit(self._cached_frames, spec).result()

    def mp4(self, spec: ClipSpec) -> bytes:
        """The clip's MP4: the plain encoding, or the key's own variant (``spec.variant``)."""
        frames = self.frames(spec)
        if not spec.variant:
            return encode_mp4(frames, spec.fps)
        varied, crf = vary_frames(frames, spec.variant_seed())
        return encode_mp4(varied, spec.fps, crf=crf)

    def close(self) -> None:
        def _close_all() -> None:
            for replayer in self._replayers.values():
                if replayer is not None:
                    replayer.close()
            self._replayers.clear()
            self._recent.clear()

        self._executor.submit(_close_all).result()
        self._executor.shutdown()


class ClipCache:
    """MP4 files in ``clip_dir``, one per segment and rendering settings, written atomically.

    File names are built only from a segment's hex public id and a hash, never from request
    input, and are checked to resolve inside ``clip_dir``.
    """

    def __init__(self, clip_dir: str | Path, renderer: ClipRenderer) -> None:
        self.clip_dir = Path(clip_dir).resolve()
        self.clip_dir.mkdir(parents=True, exist_ok=True)
        self.renderer = renderer
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path_for(self, spec: ClipSpec) -> Path:
        if not (len(spec.key) == 32 and all(c in "0123456789abcdef" for c in spec.key)):
            raise RenderError(f"clip key {spec.key!r} is not a 32-digit hex id")
        path = (self.clip_dir / f"{spec.key}-{spec.digest()}.mp4").resolve()
        if path.parent != self.clip_dir:
            raise RenderError("clip path escapes the clip folder")
        return path

    def get(self, spec: ClipSpec) -> Path:
        """The cached MP4 for ``spec``, rendering it on first use."""
        from ratingrl.feedback.io import atomic_write_bytes

        path = self.path_for(spec)
        if path.exists():
            return path
        with self._guard:
            lock = self._locks.setdefault(path.name, threading.Lock())
        with lock:
            if not path.exists():
                atomic_write_bytes(path, self.renderer.mp4(spec))
        return path
