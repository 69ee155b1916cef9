"""Scores per playlist, per category and overall, for the model and the baselines.

Methods (steps.evaluation): `model`, the learned ranker's submission; `cooccurrence`, the
same test candidates ranked by co-occurrence with the seeds alone (no learned model; see
submission.cooccurrence_scores), which the model must beat for its place; `popularity`,
the 500 most popular tracks.

Outputs: a tidy DataFrame (method, category, playlists, r_precision, ndcg, clicks), the same
as a Markdown table, and a per-category bar chart as PNG bytes (matplotlib, Agg backend).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spotify_mpc import metrics
from spotify_mpc.challenge import CATEGORY_NAMES, ChallengeView

METRICS = ("r_precision", "ndcg", "clicks")


def score_lists(view: ChallengeView, lists: np.ndarray, track_artist: np.ndarray) -> pd.DataFrame:
    """One row per playlist: pid, category, hidden, unseen (hidden tracks unknown to training), metrics."""
    columns = ["pid", "category", "hidden", "unseen", *METRICS]
    if len(view) == 0:
        return pd.DataFrame([], columns=columns)
    lists = np.asarray(lists)
    r_precision, ndcg, clicks = metrics.all_scores(view.hidden_ptr, view.hidden_tracks, view.hidden_artists,
                                                   lists, track_artist[lists])
    h_row = np.repeat(np.arange(len(view)), np.diff(view.hidden_ptr))
    return pd.DataFrame(dict(zip(columns, (
        view.pids, view.categories, np.diff(view.hidden_ptr).astype(np.int64),
        np.bincount(h_row[view.hidden_tracks < 0], minlength=len(view)).astype(np.int64),
        r_precision, ndcg, clicks))))


def summarize(per_playlist: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean metrics per (method, category) plus an 'overall' row per method.

    unseen_share: the share of hidden tracks no training playlist contains (no method can
    recommend them), so a low score can be told apart from an impossible one.
    """
    out = []
    for method, df in per_playlist.items():
        df = df.assign(unseen_share=df["unseen"] / df["hidden"])
        g = df.groupby("category")[[*METRICS, "unseen_share"]].mean()
        n = df.groupby("category").size()
        for cat, row in g.iterrows():
            out.append({"method": method, "category": CATEGORY_NAMES[cat] if 0 <= cat < len(CATEGORY_NAMES) else str(cat),
                        "playlists": int(n[cat]), **row.to_dict()})
        out.append({"method": method, "category": "overall", "playlists": len(df),
                    **df[[*METRICS, "unseen_share"]].mean().to_dict()})
    return pd.DataFrame(out)


def markdown(summary: pd.DataFrame) -> str:
    """Category rows, one column per method and metric (clicks: lower is better)."""
    methods = list(dict.fromkeys(summary["method"]))
    head = ["category", "playlists", "unseen"] + [f"{m} {k}" for k in METRICS for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cat in dict.fromkeys(summary["category"]):
        sub = summary[summary["category"] == cat].set_index("method")
        cells = [cat, str(int(sub["playlists"].iloc[0])), f"{sub['unseen_share'].iloc[0]:.1%}"]
        cells += [f"{sub.at[m, k]:.4f}" if k != "clicks" else f"{sub.at[m, k]:.2f}" for k in METRICS for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_png(summary: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display in pods
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(summary["method"]))
    cats = list(dict.fromkeys(summary["category"]))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 4.5))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(cats))
    for ax, metric in zip(axes, METRICS):
        for j, m in enumerate(methods):
            sub = summary[summary["method"] == m].set_index("category").reindex(cats)
            ax.bar(x + j * width, sub[metric].to_numpy(), width, label=m)
        ax.set_title(metric + (" (lower is better)" if metric == "clicks" else ""))
        ax.set_xticks(x + width * (len(methods) - 1) / 2)
        ax.set_xticklabels(cats, rotation=60, ha="right", fontsize=7)
    axes[0].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


@dataclass(frozen=True)
class EvaluationResult:
    table: pd.DataFrame  # summarize() output
    markdown: str
    png: bytes


def evaluate(view: ChallengeView, lists: dict[str, np.ndarray], track_artist: np.ndarray) -> EvaluationResult:
    per = {name: score_lists(view, l, track_artist) for name, l in lists.items()}
    table = summarize(per)
    return EvaluationResult(table, markdown(table), plot_png(table))
