"""Print markdown tables (Kendall tau, mean ± std over seeds) from fidelity reports.

Usage: .venv/bin/python benchmarks/fidelity_table.py benchmarks/results/fidelity_*.json
"""

from __future__ import annotations

import sys

from ratingrl.experiments.plots import load_reports


def table(report: dict, metric: str = "kendall_tau") -> str:
    methods = list(report["conditions"][0]["results"])
    lines = [
        f"**{report['config']['env_id']}** — {metric.replace('_', ' ')} on held-out segments",
        "",
        "| N | K | noise | " + " | ".join(methods) + " |",
        "|---:|---:|---:|" + "---:|" * len(methods),
    ]
    for c in report["conditions"]:
        res = c["results"]
        best = max(res[m][metric]["mean"] for m in methods if m in res)
        cells = []
        for m in methods:
            if m not in res:
                cells.append("")
                continue
            v = res[m][metric]
            text = f"{v['mean']:.3f} ± {v['std']:.3f}"
            cells.append(f"**{text}**" if v["mean"] == best else text)
        lines.append(
            f"| {c['ratings']} | {c['classes']} | {c['noise']:g} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    metric = "kendall_tau"
    paths = [p for p in sys.argv[1:] if not p.startswith("--")]
    for arg in sys.argv[1:]:
        if arg.startswith("--metric="):
            metric = arg.split("=", 1)[1]
    for report in load_reports(paths):
        print(table(report, metric))
        print()
