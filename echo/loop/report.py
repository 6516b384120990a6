"""The experiment's report: OUT/report.md, OUT/report.html, PNG plots, OUT/results.json."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from echo.loop.stats import OUTCOMES


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
                "pairs_harvested": pairs if t else 0, "training_tokens": t.get("tokens", 0) if t else 0,
            })  # fmt: skip
    return rows


def verdicts(results: dict[str, Any]) -> list[str]:
    """One line per paired comparison of Echo with another arm (the same evaluation users
    replayed with each model): the difference in acceptance with its 95% bootstrap
    interval over users, and where Echo does not win clearly, why."""
    out = []
    for rec in results["rounds"]:
        r = rec["round"]
        echo = f"echo-r{r}"
        for d in rec["eval"].get("paired", {}).values():
            if d["a"] != echo:
                continue
            b = d["b"]
            lo, hi = d["ci95"]
            diff = 100 * d["diff"]
            sep = lo > 0 or hi < 0
            word = "beats" if diff > 0 and sep else ("does NOT beat" if diff <= 0 else "is ahead of, but not separated from,")
            line = (f"Round {r}: {echo} {word} {b}: {diff:+.1f} points acceptance, paired 95% interval "
                    f"[{100 * lo:+.1f}, {100 * hi:+.1f}] over {d['people']} users.")  # fmt: skip
            if not (diff > 0 and sep):
                line += " Why: " + _why(rec, d)
            out.append(line)
    return out


def _why(rec: dict[str, Any], d: dict[str, Any]) -> str:
    """The likeliest reason, from the round's own numbers, that Echo did not win clearly."""
    pairs = rec["harvest"]["pairs"]
    refined = int(pairs.get("outcome:refined", 0))
    reasons = []
    if refined < 30:
        reasons.append(f"only {refined} refined pairs were harvested ({pairs['total']} in all): too little "
                       "signal to learn the project's conventions (more --harvest-users or --session-minutes)")  # fmt: skip
    lo, hi = d["ci95"]
    half = 100 * (hi - lo) / 2
    if lo <= 0 <= hi and abs(100 * d["diff"]) < half:
        reasons.append(f"with {d['people']} evaluation users the paired interval is ±{half:.1f} points, "
                       "wider than the difference (more --eval-users)")  # fmt: skip
    if not reasons:
        reasons.append("the fine-tuned model did not propose what these users keep more often "
                       "(see the outcome mix and the training loss)")  # fmt: skip
    return "; ".join(reasons) + "."


#: the demo's goals (issue 12): Echo ahead of the raw logs, later rounds no worse, time
DEMO_MAX_S = 600.0


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of the demo with ``met`` (True/False, None when the run cannot tell) and
    the run's own numbers behind it."""
    out: list[dict[str, Any]] = []

    def paired_goal(rec: dict[str, Any], other: str, goal: str, missing: str, *, strict: bool) -> None:
        r = rec["round"]
        d = rec["eval"].get("paired", {}).get(f"echo-r{r} - {other}-r{r}")
        if d is None:
            out.append({"goal": goal, "met": None, "why": missing})
            return
        # strict: the interval excludes zero; else the difference is not negative
        met = d["ci95"][0] > 0 if strict else d["diff"] >= 0
        why = f"{100 * d['diff']:+.1f} points [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
        out.append({"goal": goal, "met": met, "why": why if met else f"{why}. {_why(rec, d)}"})

    for rec in results["rounds"]:
        paired_goal(rec, "raw-accepted", f"round {rec['round']}: echo ahead of raw-accepted, paired 95% "
                    "interval excluding zero", "raw-accepted was not an arm (--ablations)", strict=True)  # fmt: skip
    if len(results["rounds"]) < 2:
        out.append({"goal": "round 2 at least as good as round 1 (echo-r2 minus echo-r1 on round 2's users)",
                    "met": None, "why": "one round was run (--rounds 2 measures it)"})  # fmt: skip
    for rec in results["rounds"][1:]:
        r = rec["round"]
        paired_goal(rec, "none", f"round {r} at least as good as round {r - 1} (echo-r{r} minus "
                    f"echo-r{r - 1}, paired)", "'none' (the round's starting model) was not an arm", strict=False)  # fmt: skip
    total = float(results.get("timings", {}).get("total_s", 0.0))
    out.append({"goal": f"the whole loop in at most {DEMO_MAX_S / 60:.0f} minutes", "met": total <= DEMO_MAX_S,
                "why": f"{total:.0f} s"})  # fmt: skip
    return out


def paired_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"round": rec["round"], "comparison": key, **d}
        for rec in results["rounds"]
        for key, d in rec["eval"].get("paired", {}).items()
    ]


def forecast_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per round and model: the forecaster's early forecast of refine and delete rates
    (backtest on the evaluation lake: trained as of half-way through, for the suggestions
    open then), what those suggestions measured later, the naive forecast (rates closed
    by then), and the rates measured over all shown suggestions at the end."""
    rows = []
    for rec in results["rounds"]:
        ef = rec["eval"].get("early_forecast") or {}
        mix = {m: v.get("outcome_mix", {}) for m, v in rec["eval"]["metrics"].items()}
        for p in ef.get("per_model", []):
            shown = sum(mix.get(p["model_id"], {}).values())
            at_end = {k: mix.get(p["model_id"], {}).get(c, 0) / shown if shown else float("nan")
                      for k, c in (("refine", "refined"), ("delete", "deleted"))}  # fmt: skip
            rows.append({"round": rec["round"], **p, "measured_refine": at_end["refine"],
                         "measured_delete": at_end["delete"]})  # fmt: skip
    return rows


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}%"  # NaN: no suggestion to measure


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
            if t.get("loss"):
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
    results["goals"] = goals(results)
    paired = results["paired"] = paired_rows(results)
    pheader = ("round", "comparison", "difference", "95% CI (bootstrap over users)", "users")
    pcells = [
        (str(p["round"]), p["comparison"], f"{100 * p['diff']:+.1f} pts",
         f"[{100 * p['ci95'][0]:+.1f}, {100 * p['ci95'][1]:+.1f}]", str(p["people"]))
        for p in paired
    ]  # fmt: skip
    fc = results["early_forecast"] = forecast_rows(results)
    fheader = ("round", "model", "open at T", "forecast refine / delete", "later measured refine / delete",
               "naive (closed by T)", "measured at the end, all shown")  # fmt: skip
    fcells = [
        (str(f["round"]), f["model_id"], f"{f['open']:,}",
         f"{_pct(f['forecast_refine'])} / {_pct(f['forecast_delete'])}",
         f"{_pct(f['later_measured_refine'])} / {_pct(f['later_measured_delete'])}",
         f"{_pct(f['naive_refine'])} / {_pct(f['naive_delete'])}",
         f"{_pct(f['measured_refine'])} / {_pct(f['measured_delete'])}")
        for f in fc
    ]  # fmt: skip
    fnotes = []
    for rec in results["rounds"]:
        ef = rec["eval"].get("early_forecast")
        if not ef:
            continue
        if "skipped" in ef:
            fnotes.append(f"Round {rec['round']}: early forecast not measured: {ef['skipped']}.")
            continue
        e = ef["open_weighted_abs_error"]
        fnotes.append(f"Round {rec['round']}: {ef['forecaster']} trained on {ef['train']:,} suggestions closed "
                      f"by T, {ef['open']:,} open; open-weighted absolute error of the refine rate "
                      f"{e['forecast_refine_mae_pp']:.2f} points (naive {e['naive_refine_mae_pp']:.2f}), "
                      f"of the delete rate {e['forecast_delete_mae_pp']:.2f} (naive {e['naive_delete_mae_pp']:.2f}).")  # fmt: skip
    mark = {True: "met", False: "NOT met", None: "not measured"}
    skipped = [f"Round {rec['round']}: arm {arm} skipped: {t['skipped']}."
               for rec in results["rounds"] for arm, t in rec.get("training", {}).items() if t.get("skipped")]  # fmt: skip
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
          "Acceptance of each model on the same fresh held-out users (paired design: every model "
          "is deployed to the same users, files and random draws), computed from the evaluation "
          "lake's gold/acceptance_metrics; outcome mix from silver/suggestions.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    md += ["| " + " | ".join(c) + " |" for c in cells]
    md += ["", "## Paired differences", "", "Acceptance of the first model minus the second on the "
           "same users; 95% percentile bootstrap interval over users.", "",
           "| " + " | ".join(pheader) + " |", "|" + "---|" * len(pheader)]  # fmt: skip
    md += ["| " + " | ".join(c) + " |" for c in pcells]
    md += ["", *[f"- {v}" for v in results["verdicts"]], *[f"- {v}" for v in skipped], ""]
    if fcells or fnotes:
        md += ["## Early forecast of refine and delete rates (GraphSB forecaster, docs/graph.md)", "",
               "Backtest on each evaluation lake: the forecaster is trained as of a time T half-way "
               "through it, on the suggestions whose horizon had closed by then, and forecasts the rates "
               "of the suggestions still open at T; beside it, what those suggestions measured later, "
               "the naive forecast (the rates of the suggestions closed by T) and the rates over all "
               "shown suggestions at the end.", ""]  # fmt: skip
        if fcells:
            md += ["| " + " | ".join(fheader) + " |", "|" + "---|" * len(fheader)]
            md += ["| " + " | ".join(c) + " |" for c in fcells]
        md += ["", *[f"- {n}" for n in fnotes], ""]
    md += ["## Goals", "", *[f"- **{mark[g['met']]}**: {g['goal']} ({g['why']})" for g in results["goals"]], ""]
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
    h += ["</table><h2>Paired differences</h2><table><tr>" + "".join(f"<th>{esc(x)}</th>" for x in pheader) + "</tr>"]
    h += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in c) + "</tr>" for c in pcells]
    h += ["</table><ul>" + "".join(f"<li>{esc(v)}</li>" for v in [*results["verdicts"], *skipped]) + "</ul>"]
    if fcells or fnotes:
        h += ["<h2>Early forecast of refine and delete rates</h2><table><tr>"
              + "".join(f"<th>{esc(x)}</th>" for x in fheader) + "</tr>"]  # fmt: skip
        h += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in c) + "</tr>" for c in fcells]
        h += ["</table><ul>" + "".join(f"<li>{esc(n)}</li>" for n in fnotes) + "</ul>"]
    h += ["<h2>Goals</h2><ul>" + "".join(f"<li><b>{mark[g['met']]}</b>: {esc(g['goal'])} ({esc(g['why'])})</li>"
                                         for g in results["goals"]) + "</ul>"]  # fmt: skip
    h += [f"<p><img src='{p}' alt='{p}'></p>" for p in plots]
    h += [f"<h2>Config</h2><pre>{esc(cfg_text)}</pre></body></html>"]
    (out / "report.html").write_text("\n".join(h), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return {"md": out / "report.md", "html": out / "report.html", "json": out / "results.json"}
