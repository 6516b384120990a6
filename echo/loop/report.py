"""The experiment's report: OUT/report.md, OUT/report.html, PNG plots, OUT/results.json."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from echo.loop.stats import OUTCOMES, intervals_overlap


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for rec in results["rounds"]:
        training = rec.get("training", {})
        pairs = rec["harvest"]["pairs"]["total"]
        for model, m in rec["eval"]["metrics"].items():
            arm = model.rsplit("-r", 1)[0] if model != "static" else "static"
            t = training.get(arm)
            rows.append({
                "round": rec["round"], "model": model, "shown": m["shown"], "accepted": m["accepted"],
                "acceptance": m["acceptance"], "ci95": m["ci95"], "char_retention": m["char_retention"],
                "kept_unchanged_share": m["kept_unchanged_share"],
                "pairs_harvested": pairs if t else 0, "training_tokens": t["tokens"] if t else 0,
            })  # fmt: skip
    return rows


def verdicts(results: dict[str, Any]) -> list[str]:
    out = []
    for rec in results["rounds"]:
        r, ms = rec["round"], rec["eval"]["metrics"]
        echo = ms.get(f"echo-r{r}")
        if echo is None:
            continue
        for other in sorted(ms):
            if other == f"echo-r{r}":
                continue
            o = ms[other]
            diff = (echo["acceptance"] - o["acceptance"]) * 100
            sep = not intervals_overlap(echo["ci95"], o["ci95"])
            word = "beats" if diff > 0 and sep else ("does NOT beat" if diff <= 0 else "is ahead of, but not separated from,")
            line = (f"Round {r}: echo-r{r} {word} {other}: {diff:+.1f} points acceptance "
                    f"({'non-overlapping' if sep else 'overlapping'} 95% CIs).")  # fmt: skip
            if not (diff > 0 and sep):
                line += " Why: " + _why(rec, echo, o, diff)
            out.append(line)
    return out


def _why(rec: dict[str, Any], echo: dict[str, Any], other: dict[str, Any], diff: float) -> str:
    """The likeliest reason, from the round's own numbers, that Echo did not win clearly."""
    pairs = rec["harvest"]["pairs"]
    refined = int(pairs.get("outcome:refined", 0))
    n = min(int(echo["shown"]), int(other["shown"]))
    reasons = []
    if refined < 30:
        reasons.append(f"only {refined} refined pairs were harvested ({pairs['total']} in all): too little "
                       "signal to learn the project's conventions (more --harvest-users or --session-minutes)")  # fmt: skip
    # the smallest difference a 95% test separates at this sample size (two proportions near p)
    p = max(0.05, (echo["acceptance"] + other["acceptance"]) / 2)
    detectable = 100 * 2.8 * (2 * p * (1 - p) / max(n, 1)) ** 0.5
    if abs(diff) < detectable:
        reasons.append(f"with {n:,} proposals per arm a difference under ~{detectable:.0f} points cannot be "
                       "separated (more --eval-users)")  # fmt: skip
    if not reasons:
        reasons.append("the fine-tuned model did not propose what these users keep more often "
                       "(see the outcome mix and the training loss)")  # fmt: skip
    return "; ".join(reasons) + "."


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    from matplotlib.figure import Figure  # no pyplot: no global backend, no open figures

    def subplots(*grid: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*grid)

    files = []
    rows = table_rows(results)
    fig, ax = subplots(figsize=(7, 4))
    arms = sorted({r["model"].rsplit("-r", 1)[0] for r in rows})
    for k, arm in enumerate(arms):
        pts = [r for r in rows if r["model"].rsplit("-r", 1)[0] == arm]
        xs = [p["round"] + (k - (len(arms) - 1) / 2) * 0.08 for p in pts]
        ys = [p["acceptance"] * 100 for p in pts]
        err = [[(p["acceptance"] - p["ci95"][0]) * 100 for p in pts], [(p["ci95"][1] - p["acceptance"]) * 100 for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=arm)
    ax.set_xlabel("round (held-out users)")
    ax.set_ylabel("acceptance rate, % (95% Wilson CI)")
    ax.set_xticks([rec["round"] for rec in results["rounds"]])
    ax.set_xlim(0.5, len(results["rounds"]) + 0.5)
    ax.legend()
    ax.set_title("Acceptance by round")
    fig.tight_layout()
    fig.savefig(out / "acceptance_by_round.png", dpi=110)
    files.append("acceptance_by_round.png")

    fig, ax = subplots(figsize=(max(6.0, 1.1 * len(rows)), 4))
    labels = [f"{r['model']}" for r in rows]
    bottom = [0.0] * len(rows)
    for outcome in OUTCOMES:
        vals = []
        for rec in results["rounds"]:
            for m in rec["eval"]["metrics"].values():
                total = sum(m["outcome_mix"].values()) or 1
                vals.append(100 * m["outcome_mix"].get(outcome, 0) / total)
        ax.bar(labels, vals, bottom=bottom, label=outcome)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("% of shown suggestions")
    ax.set_title("Outcome mix (silver/suggestions, held-out users)")
    ax.legend(fontsize=7, ncol=2)
    for label in ax.get_xticklabels():
        label.set_rotation(20)
        label.set_horizontalalignment("right")
    fig.tight_layout()
    fig.savefig(out / "outcome_mix.png", dpi=110)
    files.append("outcome_mix.png")

    fig, axes = subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(results["static"]["loss"], color="gray")
    axes[0].set_title("static pretraining loss (stdlib + public code)")
    axes[0].set_xlabel("step")
    for rec in results["rounds"]:
        for arm, t in rec["training"].items():
            axes[1].plot(range(1, len(t["loss"]) + 1), t["loss"], label=f"{arm} r{rec['round']}")
    axes[1].set_title("fine-tuning loss (Ray Train, completion tokens)")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "training_loss.png", dpi=110)
    files.append("training_loss.png")
    return files


def write_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    rows = table_rows(results)
    results["table"] = rows
    results["verdicts"] = verdicts(results)
    plots = _plots(results, out)
    header = ("round", "model", "shown", "acceptance", "95% CI", "char retention", "kept unchanged",
              "pairs harvested", "training tokens")  # fmt: skip
    cells = [
        (str(r["round"]), r["model"], f"{r['shown']:,}", f"{r['acceptance']:.1%}",
         f"[{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]", f"{r['char_retention']:.1%}",
         f"{r['kept_unchanged_share']:.1%}", f"{r['pairs_harvested']:,}", f"{r['training_tokens']:,}")
        for r in rows
    ]  # fmt: skip
    cfg_text = json.dumps(results["config"], indent=2)
    md = ["# Echo experience loop", "",
          "Acceptance of each model on fresh held-out users (A/B by session), computed from the "
          "evaluation lake's gold/acceptance_metrics; outcome mix from silver/suggestions.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    md += ["| " + " | ".join(c) + " |" for c in cells]
    md += ["", *[f"- {v}" for v in results["verdicts"]], ""]
    md += [f"![{p}]({p})" for p in plots]
    md += ["", f"Wall time: {results['timings'].get('total_s', 0):.0f} s; stages: "
           + ", ".join(f"{k} {v}" for k, v in results["timings"].items()), "",
           "## Config", "", "```json", cfg_text, "```", ""]  # fmt: skip
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    esc = html.escape
    h = ["<!doctype html><html><head><meta charset='utf-8'><title>Echo loop</title>",
         "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>",
         "<h1>Echo experience loop</h1><table><tr>" + "".join(f"<th>{esc(x)}</th>" for x in header) + "</tr>"]  # fmt: skip
    h += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in c) + "</tr>" for c in cells]
    h += ["</table><ul>" + "".join(f"<li>{esc(v)}</li>" for v in results["verdicts"]) + "</ul>"]
    h += [f"<p><img src='{p}' alt='{p}'></p>" for p in plots]
    h += [f"<h2>Config</h2><pre>{esc(cfg_text)}</pre></body></html>"]
    (out / "report.html").write_text("\n".join(h), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return {"md": out / "report.md", "html": out / "report.html", "json": out / "results.json"}
