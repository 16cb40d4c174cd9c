"""Glue for TRL's ``GRPOTrainer`` (optional extra ``ratingrl[trl]``).

TRL sums its reward functions with ``GRPOConfig(reward_weights=...)``; :func:`trl_reward_functions`
returns our three rewards and their weights so that the sum is exactly :class:`JointReward`.
Because every callable applies the format gate itself, a malformed answer gets 0 from all three.

``trl``, ``transformers``, ``tokenizers`` and ``datasets`` are imported lazily inside the
functions that need them, so importing this module costs nothing without the extra.
:func:`tiny_offline_lm` builds a randomly initialised causal LM and a character-level tokenizer
locally: it exists for smoke tests and examples that must not download anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ratingrl.ordinal.rewards import (
    DEFAULT_DELTA,
    FormatReward,
    RankingReward,
    RegressionReward,
    RewardWeights,
)

__all__ = ["ordinal_prompt", "prompt_dataset", "tiny_offline_lm", "trl_reward_functions"]


def trl_reward_functions(
    delta: float = DEFAULT_DELTA,
    weights: RewardWeights | None = None,
    target_column: str = "target",
) -> tuple[list[Any], list[float]]:
    """``(reward_funcs, reward_weights)`` for ``GRPOTrainer`` and ``GRPOConfig``.

    >>> funcs, w = trl_reward_functions(delta=2.0, weights=RewardWeights(1.0, 0.5, 0.25))
    >>> [f.__name__ for f in funcs], w
    (['ordinal_regression', 'ordinal_ranking', 'ordinal_format'], [1.0, 0.5, 0.25])
    >>> sum(wi * f(['{"a": 3, "b": 5}'], target=[{"a": 3, "b": 6}])[0] for f, wi in zip(funcs, w))
    1.625
    """
    weights = weights or RewardWeights()
    funcs = [
        RegressionReward(delta=delta, target_column=target_column),
        RankingReward(target_column=target_column),
        FormatReward(target_column=target_column),
    ]
    return funcs, [weights.regression, weights.ranking, weights.format]


def ordinal_prompt(items: Mapping[str, str], low: float, high: float) -> str:
    """A text prompt asking for one value per item id as a JSON object.

    >>> print(ordinal_prompt({"a": "a photo of 3 apples", "b": "a photo of 7 pears"}, 0, 9))
    Rate each item on a scale from 0 to 9.
    a: a photo of 3 apples
    b: a photo of 7 pears
    Answer with a JSON object mapping each id to its value, e.g. {"a": 0, "b": 0}.
    """
    lines = [f"Rate each item on a scale from {low:g} to {high:g}."]
    lines += [f"{item_id}: {text}" for item_id, text in items.items()]
    example = json.dumps({item_id: low for item_id in items}).replace(".0", "")
    lines.append(f"Answer with a JSON object mapping each id to its value, e.g. {example}.")
    return "\n".join(lines)


def prompt_dataset(prompts: Sequence[str], targets: Sequence[Mapping[str, float]]) -> Any:
    """A ``datasets.Dataset`` with ``prompt`` and a JSON-string ``target`` column.

    Targets are stored as JSON strings because queries have different item ids, which Arrow
    cannot hold as one struct column; the rewards accept either form.
    """
    from datasets import Dataset

    if len(prompts) != len(targets):
        raise ValueError("one target mapping per prompt is required")
    return Dataset.from_dict(
        {"prompt": list(prompts), "target": [json.dumps(dict(t)) for t in targets]}
    )


def tiny_offline_lm(
    alphabet: str | None = None, hidden: int = 32, layers: int = 1, seed: int = 0
) -> tuple[Any, Any]:
    """A tiny randomly initialised GPT-2 and a character-level tokenizer, built without downloads.

    The tokenizer has one token per character of ``alphabet`` (default: printable ASCII) plus
    ``<pad>``, ``<eos>`` and ``<unk>``, so any prompt can be encoded and the model can emit the
    braces, quotes and digits of a JSON answer.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    chars = alphabet or "".join(chr(c) for c in range(32, 127)) + "\n"
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<unk>", *dict.fromkeys(chars)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=512,
        n_embd=hidden,
        n_layer=layers,
        n_head=2,
        bos_token_id=vocab["<eos>"],
        eos_token_id=vocab["<eos>"],
        pad_token_id=vocab["<pad>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = vocab["<eos>"]
    model.generation_config.pad_token_id = vocab["<pad>"]
    return model, tokenizer
