import json

import pytest

from ratingrl.experiments.plots import load_reports, plot_fidelity


def report(env, conditions):
    entry = lambda tau: {  # noqa: E731
        "kendall_tau": {"mean": tau, "std": 0.01},
        "spearman": {"mean": tau, "std": 0.01},
        "label_accuracy": {"mean": tau, "std": 0.01},
    }
    return {
        "config": {"env_id": env},
        "conditions": [
            {
                "ratings": n,
                "classes": k,
                "noise": p,
                "results": {"r4": entry(t), "rbrl": entry(t - 0.1)},
            }
            for n, k, p, t in conditions
        ],
    }


def test_reports_of_one_env_merge_and_plot(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    c = tmp_path / "c.json"
    a.write_text(json.dumps(report("X", [(100, 4, 0.0, 0.7), (1000, 4, 0.0, 0.9)])))
    b.write_text(json.dumps(report("X", [(1000, 2, 0.0, 0.8), (1000, 4, 0.0, 0.91)])))
    c.write_text(json.dumps(report("Y", [(1000, 4, 0.2, 0.5), (1000, 4, 0.4, 0.4)])))
    reports = load_reports([a, b, c])
    assert [r["config"]["env_id"] for r in reports] == ["X", "Y"]
    x = reports[0]["conditions"]
    assert [(c["ratings"], c["classes"]) for c in x] == [(100, 4), (1000, 2), (1000, 4)]
    assert x[2]["results"]["r4"]["kendall_tau"]["mean"] == 0.91  # the later file wins
    out = plot_fidelity(reports, tmp_path / "fig.png")
    assert out.stat().st_size > 10_000


def test_unreadable_report(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not a readable benchmark report"):
        load_reports([bad])
