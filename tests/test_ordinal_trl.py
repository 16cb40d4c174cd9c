"""TRL's GRPOTrainer runs a few steps with our rewards on a tiny, locally built language model."""

import json
import os

import pytest

# Belt and braces: the model and tokenizer are built locally, nothing may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
pytest.importorskip("trl")

from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from ratingrl.ordinal.rewards import RewardWeights  # noqa: E402
from ratingrl.ordinal.trl import (  # noqa: E402
    ordinal_prompt,
    prompt_dataset,
    tiny_offline_lm,
    trl_reward_functions,
)


class _Recorder:
    """Wraps a reward callable and keeps what TRL passed to it."""

    def __init__(self, func):
        self.func, self.__name__, self.calls = func, func.__name__, []

    def __call__(self, completions, **kwargs):
        scores = self.func(completions, **kwargs)
        self.calls.append((list(completions), list(kwargs["target"]), scores, kwargs["prompts"]))
        return scores


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 deprecations inside TRL
def test_grpo_trainer_runs_with_ordinal_rewards(tmp_path) -> None:
    model, tokenizer = tiny_offline_lm(seed=0)
    targets = [{"a": 2, "b": 7}, {"x": 5}, {"p": 1, "q": 4, "r": 9}, {"m": 3, "n": 3}]
    prompts = [ordinal_prompt({k: f"item {k}" for k in t}, 0, 9) for t in targets]
    funcs, weights = trl_reward_functions(delta=2.0, weights=RewardWeights(1.0, 1.0, 0.5))
    recorders = [_Recorder(f) for f in funcs]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        reward_weights=weights,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=recorders,
        args=args,
        train_dataset=prompt_dataset(prompts, targets),
        processing_class=tokenizer,
    )
    trainer.train()

    assert trainer.state.global_step == 3
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == 3
    for rec in recorders:
        assert rec.calls, f"{rec.__name__} was never called"
        completions, target_column, scores, prompts_seen = rec.calls[0]
        assert len(completions) == len(target_column) == len(scores) == len(prompts_seen) == 4
        assert all(isinstance(c, str) for c in completions)
        assert all(0.0 <= s <= 1.0 for s in scores)
        # Each completion is scored against the targets of the prompt it answers.
        for prompt, target in zip(prompts_seen, target_column, strict=True):
            assert json.loads(target) in targets
            assert all(f"{key}: item {key}" in prompt for key in json.loads(target))
    # The logged reward is the weighted sum of our three rewards for the same completions.
    first = [rec.calls[0][2] for rec in recorders]
    expected = sum(w * sum(s) / len(s) for w, s in zip(weights, first, strict=True))
    assert logged[0]["reward"] == pytest.approx(expected, abs=1e-5)
