"""Ten lines from ratings to a reward: the documentation's getting-started page includes this file.

Random actions on Pendulum-v1 are cut into 50-step segments, a simulated teacher rates each one
bad / poor / good / excellent by its true return, and R4 learns a reward from those ratings
(a few seconds on a CPU). tests/test_docs.py runs it, so the page shows code that works.

Run: python examples/getting_started.py
"""

# --8<-- [start:ten-lines]
import numpy as np

from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.teachers import Bins, RatingTeacher
from ratingrl.rewards.methods import make_method
from ratingrl.rewards.training import TrainerConfig, train_reward_model

rng = np.random.default_rng(0)
episodes = collect_episodes("Pendulum-v1", random_policy([-2.0], [2.0], rng), 16, seed=0)
segments = segment_episodes(episodes, horizon=50)  # obs, acts, true returns
scale = Bins.quantile(4, segments.true_returns)  # four equally filled classes
teacher = RatingTeacher(scale, names=("bad", "poor", "good", "excellent"))
rated = teacher.rate_dataset(segments, rng)  # what people would give you
result = train_reward_model(rated, make_method("r4"), TrainerConfig(epochs=30))
reward_fn = result.model.as_reward_fn()  # (s, a, s', done) -> rewards
# --8<-- [end:ten-lines]

if __name__ == "__main__":
    print(f"{len(rated)} ratings per class: {rated.class_counts().tolist()}")
    first = reward_fn(segments.obs[0, :5], segments.acts[0, :5], None, None)
    print("learned rewards of the first segment's first steps:", first.round(2))
