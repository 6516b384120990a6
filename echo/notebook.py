"""Small helpers for the notebooks in ``notebooks/``: the same code on Databricks and locally.

On Databricks ``widget`` uses ``dbutils.widgets`` and ``show`` uses ``display``; locally
``widget`` reads ``ECHO_WIDGET_<NAME>`` from the environment (else the default) and ``show``
prints a text rendering (tables, dicts, diffs) or saves a figure as PNG under
``ECHO_NOTEBOOK_OUT`` (default ``./notebook_out``). Everything else here is the logic the
notebooks would otherwise repeat: reading a table that may not exist yet, diffs of a
proposal against the user's final text, the acceptance dashboard's figures and the
training report.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from echo.lake import Lake
    from echo.lake.tables import Table

#: rows a local ``show`` prints of a table
SHOW_ROWS = 20


def _notebook_global(name: str) -> Any:
    """A name the notebook's runtime defines (``dbutils``, ``display``), or None."""
    main = sys.modules.get("__main__")
    if main is not None and name in vars(main):
        return vars(main)[name]
    try:  # Databricks notebooks run in IPython; the names live in its user namespace
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None and name in ip.user_ns:
            return ip.user_ns[name]
    except ImportError:
        pass
    return None


def env_name(name: str) -> str:
    """Environment variable that sets widget ``name`` locally: ``ECHO_WIDGET_LAKE``."""
    return "ECHO_WIDGET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def widget(name: str, default: str, label: str | None = None) -> str:
    """A notebook parameter: a text widget on Databricks, else ``$ECHO_WIDGET_<NAME>`` or
    ``default``."""
    dbutils = _notebook_global("dbutils")
    if dbutils is not None:
        dbutils.widgets.text(name, default, label or name)
        return str(dbutils.widgets.get(name))
    return os.environ.get(env_name(name), default)


def out_dir() -> Path:
    path = Path(os.environ.get("ECHO_NOTEBOOK_OUT", "notebook_out"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


def render(obj: Any, *, rows: int = SHOW_ROWS) -> str:
    """A plain-text rendering of a Spark or pandas DataFrame, a mapping, a list or text."""
    import pandas as pd

    if hasattr(obj, "toPandas") and hasattr(obj, "limit"):  # Spark DataFrame
        obj = obj.limit(rows).toPandas()
    if isinstance(obj, pd.DataFrame):
        if obj.empty:
            return f"(no rows; columns: {', '.join(map(str, obj.columns))})"
        with pd.option_context(
            "display.max_columns", 50, "display.width", 200, "display.max_colwidth", 60
        ):
            return obj.head(rows).to_string(index=False)
    if isinstance(obj, (dict, list, tuple)):
        return json.dumps(obj, indent=2, sort_keys=True, default=str)
    return str(obj)


def show(obj: Any, title: str | None = None) -> str:
    """Display ``obj``: Databricks' ``display`` where present, else print a rendering
    (a matplotlib figure is saved as PNG). Returns what was printed or the PNG path."""
    if title:
        print(f"## {title}")
    is_figure = hasattr(obj, "savefig")
    display: Callable[[Any], None] | None = _notebook_global("display")
    if display is not None and not isinstance(obj, str):
        display(obj)
        return ""
    if is_figure:
        path = out_dir() / f"{_slug(title or 'figure')}.png"
        obj.savefig(path, dpi=80, bbox_inches="tight")
        print(f"[figure saved: {path}]")
        return str(path)
    text = render(obj)
    print(text)
    return text


# -- lake ---------------------------------------------------------------------------------
def open_notebook_lake(root: str, backend: str = "auto") -> tuple[Any, Lake]:
    """The notebook's Spark session (the active one on Databricks) and the lake at ``root``."""
    from echo.lake import open_lake
    from echo.spark import get_spark

    spark = get_spark("echo-notebook")
    lake = open_lake(spark, root, backend)
    lake.check_root(create=False)
    return spark, lake


def table_or_none(lake: Lake, table: Table) -> DataFrame | None:
    """The table as a DataFrame, or None when the stage that writes it has not run."""
    return lake.read(table) if lake.exists(table) else None


# -- refinement pairs ----------------------------------------------------------------------
def text_diff(proposal: str, final: str) -> str:
    """Line diff of the proposal against the final text (``-`` proposal, ``+`` final),
    with ``?`` guide lines marking the characters that changed."""
    lines = difflib.ndiff(
        (proposal or "").splitlines(keepends=False), (final or "").splitlines(keepends=False)
    )
    return "\n".join(lines)


def side_by_side(proposal: str, final: str, width: int = 50) -> str:
    """The proposal and the final text in two columns, ``|`` between equal lines and
    ``*`` between changed ones."""
    a, b = (proposal or "").splitlines() or [""], (final or "").splitlines() or [""]
    out = [f"{'proposal':<{width}}   final", f"{'-' * width}   {'-' * width}"]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            lt = left[k] if k < len(left) else ""
            rt = right[k] if k < len(right) else ""
            mark = "|" if tag == "equal" else "*"
            out.append(f"{lt[:width]:<{width}} {mark} {rt[:width]}")
    return "\n".join(out)


def diff_html(proposal: str, final: str) -> str:
    """An HTML side-by-side table (for ``displayHTML`` on Databricks)."""
    return difflib.HtmlDiff(wrapcolumn=60).make_table(
        (proposal or "").splitlines(), (final or "").splitlines(), "proposal", "final"
    )


def show_diff(proposal: str, final: str, title: str | None = None) -> str:
    """Side-by-side diff: HTML on Databricks, text columns plus ``ndiff`` locally."""
    display_html = _notebook_global("displayHTML")
    if display_html is not None:
        if title:
            print(f"## {title}")
        display_html(diff_html(proposal, final))
        return ""
    text = side_by_side(proposal, final) + "\n\n" + text_diff(proposal, final)
    return show(text, title)


# -- acceptance dashboard ----------------------------------------------------------------
def acceptance_figures(
    metrics: pd.DataFrame, outcomes: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Figures of the acceptance dashboard from gold/acceptance_metrics rows (pandas):
    acceptance rate per day and model, shown vs accepted per language, and (given counts
    of silver/suggestions with columns model_id, outcome, count) the outcome mix per model."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no open figures

    figs: dict[str, Any] = {}
    m = metrics.copy()
    m["model_id"] = m["model_id"].fillna("(none)")
    m["language"] = m["language"].fillna("(none)")
    daily = m.groupby(["day", "model_id"], as_index=False)[["shown", "accepted"]].sum()
    daily["acceptance_rate"] = daily["accepted"] / daily["shown"].where(daily["shown"] > 0)
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    for model, g in daily.groupby("model_id"):
        ax.plot(g["day"].astype(str), g["acceptance_rate"], marker="o", label=str(model))
    ax.set_title("acceptance rate per day")
    ax.set_ylabel("accepted / shown")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    figs["acceptance rate per day"] = fig

    lang = (
        m.groupby("language", as_index=False)[["shown", "accepted"]]
        .sum()
        .sort_values("shown", ascending=False)
    )
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    x = range(len(lang))
    ax.bar([i - 0.2 for i in x], lang["shown"], width=0.4, label="shown")
    ax.bar([i + 0.2 for i in x], lang["accepted"], width=0.4, label="accepted")
    ax.set_xticks(list(x), [str(v) for v in lang["language"]], rotation=30)
    ax.set_title("shown vs accepted per language")
    ax.legend(fontsize="small")
    figs["shown vs accepted per language"] = fig

    if outcomes is not None and not outcomes.empty:
        o = outcomes.assign(model_id=outcomes["model_id"].fillna("(none)"))
        mix = o.pivot_table(
            index="model_id", columns="outcome", values="count", aggfunc="sum", fill_value=0
        )
        fig = Figure(figsize=(7, 3.5))
        ax = fig.subplots()
        labels = [str(v) for v in mix.index]
        bottom = [0.0] * len(labels)
        for outcome in mix.columns:
            vals = [float(v) for v in mix[outcome]]
            ax.bar(labels, vals, bottom=bottom, label=str(outcome))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.legend(fontsize="small")
        ax.set_title("outcomes per model")
        ax.set_ylabel("suggestions")
        figs["outcomes per model"] = fig
    return figs


def acceptance_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Totals per model (echo.metrics): shown, accepted, acceptance rate with its 95%
    interval, kept/refined counts, char retention."""
    import pandas as pd

    from echo.metrics import acceptance_by_model

    per_model = acceptance_by_model(metrics.astype(object).where(metrics.notna(), None).to_dict("list"))
    rows = [
        {"model_id": model, **{k: v for k, v in m.items() if k not in ("acceptance", "ci95")},
         "acceptance_rate": m["acceptance"], "ci95_low": m["ci95"][0], "ci95_high": m["ci95"][1]}
        for model, m in per_model.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


# -- training report ---------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a run still writing) is skipped."""
    rows: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def training_report(run_dir: str) -> dict[str, Any]:
    """What a training output directory holds: ``metrics.jsonl`` rows (step, loss, lr,
    tokens_per_s, ...), ``train_result.json`` and an evaluation report (``eval.json`` or
    ``eval*.json``) when present. Missing pieces are listed in ``missing``."""
    root = Path(run_dir)
    report: dict[str, Any] = {
        "run_dir": str(root),
        "metrics": [],
        "result": None,
        "eval": None,
        "missing": [],
    }
    if not root.is_dir():
        report["missing"].append(str(root))
        return report
    metrics = root / "metrics.jsonl"
    if metrics.is_file():
        report["metrics"] = read_jsonl(metrics)
    else:
        report["missing"].append("metrics.jsonl")
    for key, names in (
        ("result", ["train_result.json"]),
        ("eval", ["eval.json", *sorted(p.name for p in root.glob("eval*.json"))]),
    ):
        for name in names:
            p = root / name
            if p.is_file():
                try:
                    report[key] = json.loads(p.read_text(encoding="utf-8"))
                except ValueError:
                    continue
                break
        else:
            report["missing"].append(names[0])
    return report


def metrics_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """First/last/best loss, last lr, mean tokens/s of ``metrics.jsonl`` rows."""
    steps = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    if not steps:
        return {"steps": 0}
    tps = [
        float(r["tokens_per_s"]) for r in steps if isinstance(r.get("tokens_per_s"), (int, float))
    ]
    best = min(steps, key=lambda r: float(r["loss"]))
    return {
        "steps": len(steps),
        "last_step": steps[-1].get("step"),
        "first_loss": float(steps[0]["loss"]),
        "last_loss": float(steps[-1]["loss"]),
        "best_loss": float(best["loss"]),
        "best_step": best.get("step"),
        "last_lr": steps[-1].get("lr"),
        "mean_tokens_per_s": sum(tps) / len(tps) if tps else None,
    }


def training_figure(rows: list[dict[str, Any]]) -> Any:
    """Loss, learning rate and tokens/s against the step."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no open figures

    fig = Figure(figsize=(12, 3.2))
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, ("loss", "lr", "tokens_per_s"), strict=True):
        pts = [
            (r["step"], r[key])
            for r in rows
            if isinstance(r.get(key), (int, float)) and "step" in r
        ]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig
