"""Procedural images, the CNN heads, supervised baselines and held-out metrics."""

import numpy as np
import pytest
import torch

from ratingrl.ordinal.baselines import SupervisedConfig, predict_pool, train_supervised
from ratingrl.ordinal.data import (
    ImageTaskConfig,
    make_images,
    partition_queries,
    render_count,
    render_size,
    sample_queries,
)
from ratingrl.ordinal.metrics import ordinal_metrics
from ratingrl.ordinal.models import ImageQuery, ItemwisePolicy, OrdinalCNN


def test_images_are_reproducible_from_the_seed_and_differ_across_seeds() -> None:
    a = make_images(30, np.random.default_rng(7))
    b = make_images(30, np.random.default_rng(7))
    c = make_images(30, np.random.default_rng(8))
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


def test_count_images_contain_exactly_the_labelled_number_of_squares() -> None:
    counts = np.arange(10)
    images = render_count(counts, np.random.default_rng(0), ImageTaskConfig(noise=0.0))
    assert ((images > 0).sum(axis=(1, 2)) == 4 * counts).all()  # 2x2 squares, never overlapping
    from scipy.ndimage import label

    assert [label(img > 0)[1] for img in images] == counts.tolist()  # separate blobs


def test_disc_area_grows_with_the_size_label() -> None:
    latent = np.repeat(np.arange(10.0), 20)
    images = render_size(latent, np.random.default_rng(0), ImageTaskConfig(noise=0.0))
    area = (images > 0.05).sum(axis=(1, 2)).reshape(10, 20).mean(axis=1)
    assert (np.diff(area) > 0).all()


def test_labels_cover_the_ordinal_scale_for_both_tasks() -> None:
    pool = make_images(500, np.random.default_rng(0))
    for task in (0, 1):
        labels = pool.labels[pool.tasks == task]
        assert set(labels.tolist()) == set(range(10))
        assert np.bincount(labels).min() > 25  # roughly uniform


def test_queries_hold_distinct_images_of_one_task() -> None:
    pool = make_images(40, np.random.default_rng(0))
    q = sample_queries(pool, 50, 8, np.random.default_rng(1))
    assert all(len(set(row)) == 8 and len(set(pool.tasks[row])) == 1 for row in q)
    parts = partition_queries(pool, 4, np.random.default_rng(2))
    assert parts.shape == (20, 4) and len(np.unique(parts)) == 80  # disjoint, all used


def test_model_init_is_seeded_without_touching_global_rng() -> None:
    state = torch.random.get_rng_state()
    a = OrdinalCNN(generator=torch.Generator().manual_seed(3))
    b = OrdinalCNN(generator=torch.Generator().manual_seed(3))
    c = OrdinalCNN(generator=torch.Generator().manual_seed(4))
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    torch.manual_seed(0)  # constructors draw from the global RNG; the re-init must not depend on it
    d = OrdinalCNN(generator=torch.Generator().manual_seed(3))
    assert torch.equal(pa, torch.cat([p.flatten() for p in d.parameters()]))
    torch.random.set_rng_state(state)


def test_cumulative_head_is_a_proper_ordered_distribution() -> None:
    net = OrdinalCNN(head="cumulative", generator=torch.Generator().manual_seed(0))
    x, t = torch.randn(6, 1, 20, 20), torch.tensor([0, 1, 0, 1, 0, 1])
    probs = net.log_probs(x, t).exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    assert (torch.diff(net.thresholds(), dim=1) > 0).all()


def test_scalar_head_predicts_rounded_clipped_values() -> None:
    net = OrdinalCNN(head="scalar", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.copy_(torch.tensor([3.4, 42.0]))
    assert net.predict(torch.zeros(2, 1, 20, 20), torch.tensor([0, 1])).tolist() == [3, 9]
    with pytest.raises(ValueError):
        net.log_probs(torch.zeros(1, 1, 20, 20), torch.tensor([0]))


def test_policy_samples_follow_the_model_distribution() -> None:
    net = OrdinalCNN(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.zero_()
        net.out.bias[4] = 5.0  # task 0 almost surely answers 4
    query = ImageQuery(torch.zeros(3, 2, 1, 20, 20), torch.zeros(3, 2, dtype=torch.long))
    answers = ItemwisePolicy(net).sample(query, 64, torch.Generator().manual_seed(0))
    assert (answers == 4).float().mean() > 0.9
    logp = ItemwisePolicy(net).log_probs(query, answers)
    expected = net.log_probs(torch.zeros(1, 1, 20, 20), torch.tensor([0]))[0]
    torch.testing.assert_close(logp, expected[answers])


@pytest.mark.parametrize("head", ["categorical", "scalar", "cumulative"])
def test_supervised_training_beats_chance_on_counting(head: str) -> None:
    cfg = ImageTaskConfig(num_values=4)
    pool = make_images(300, np.random.default_rng(0), cfg)
    test = make_images(150, np.random.default_rng(1), cfg)
    keep = pool.tasks == 0
    from ratingrl.ordinal.data import OrdinalImages

    train = OrdinalImages(pool.images[keep], pool.labels[keep], pool.tasks[keep])
    net = OrdinalCNN(num_values=4, head=head, generator=torch.Generator().manual_seed(0))
    losses = train_supervised(
        net, train, SupervisedConfig(steps=80, batch_size=32, lr=3e-3), np.random.default_rng(2)
    )
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    pred = predict_pool(net, test)[test.tasks == 0]
    assert (pred == test.labels[test.tasks == 0]).mean() > 0.45  # chance is 0.25


def test_metrics_of_perfect_constant_and_reversed_predictions() -> None:
    labels = np.tile(np.arange(10), 4)
    tasks = np.repeat([0, 1], 20)
    queries = {2: np.arange(40).reshape(20, 2)}
    perfect = ordinal_metrics(labels, labels, tasks, queries)
    assert perfect["mae"] == 0 and perfect["accuracy"] == 1
    assert perfect["kendall_tau"] == pytest.approx(1) and perfect["spearman"] == pytest.approx(1)
    assert perfect["query_tau"] == pytest.approx(1)
    const = ordinal_metrics(np.full(40, 4), labels, tasks, queries)
    assert const["kendall_tau"] == 0 and const["query_tau"] == 0
    rev = ordinal_metrics(9 - labels, labels, tasks, queries)
    assert rev["spearman"] == pytest.approx(-1) and rev["mae"] == pytest.approx(5.0)
