"""ratingrl.rewards: learning a reward function from ratings or preferences.

- ``nets``: the reward ensemble (one MLP per member, input normalisation, save/load);
- ``losses``: every method's loss as a pure function of predicted returns and labels;
- ``methods``: reward methods as registered objects (``RewardMethod``, ``register``,
  ``make_method``, ``load_plugins`` for methods in the user's own modules), the built-ins
  defined there, the interface and registry in ``registry``;
- ``batching``: bootstrap resamples and per-epoch batches (random items, R4's groups);
- ``training``: the one trainer, over weighted (method, data) terms;
- ``metrics`` and ``soft_rank``: what validation and R4 compute with;
- ``robust``: method ``ordinal``, an ordered logit with a learned model of the teacher's label
  noise, for raters who make mistakes;
- ``raters``: method ``raters``, a model of each rater (own classes, thresholds, consistency),
  for crowds;
- ``epic``: the EPIC distance between two rewards, to judge a reward without training a policy;
- ``isotonic``: the isotonic blocks (scipy's solver) the soft rank is built on.

Nothing is imported here, so importing one module does not pay for the others.
"""
