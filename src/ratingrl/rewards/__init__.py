"""ratingrl.rewards: learning a reward function from ratings or preferences.

- ``nets``: the reward ensemble (one MLP per member, input normalisation, save/load);
- ``losses``: every method's loss as a pure function of predicted returns and labels;
- ``methods``: reward methods as registered objects (``RewardMethod``, ``register``,
  ``make_method``, ``load_plugins`` for methods in the user's own modules), the built-ins
  defined there, the interface and registry in ``registry``;
- ``batching``: bootstrap resamples and per-epoch batches (random items, R4's groups);
- ``training``: the one trainer, over weighted (method, data) terms;
- ``metrics`` and ``soft_rank``: what validation and R4 compute with.

Nothing is imported here, so importing one module does not pay for the others.
"""
