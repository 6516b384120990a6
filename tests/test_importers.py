"""Importers: Continue dev_data and Tabby event logs -> contract events.

Sample records follow the published schemas field by field: Continue's zod schemas
(packages/config-yaml/src/schemas/data/autocomplete, nextEditOutcome, base 0.2.0) and
Tabby's serde types (crates/tabby-common/src/api/event.rs), optional fields included
or left out as the client does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from echo.errors import InputError
from echo.importers.cli import ImportConfig, main, run_import
from echo.importers.common import pseudonym
from echo.stages.replay import ReplaySettings, replay_document
from echo.stages.validate import validate_object
from tests.helpers import write_jsonl

T0 = 1_760_000_000_000


def continue_autocomplete(cid: str, **over: Any) -> dict[str, Any]:
    """An ``autocomplete`` record of schema 0.2.0 as Continue's DataLogger writes it."""
    rec: dict[str, Any] = {
        # base (0.2.0)
        "eventName": "autocomplete", "schema": "0.2.0", "userId": "tok-alice",
        "userAgent": "Visual Studio Code/1.99.0 (Continue/1.1.40)", "selectedProfileId": "local",
        # autocomplete options (spread from helper.options)
        "disable": False, "useFileSuffix": True, "maxPromptTokens": 1024, "debounceDelay": 350,
        "maxSuffixPercentage": 0.2, "prefixPercentage": 0.3, "transform": True,
        "multilineCompletions": "auto", "slidingWindowPrefixPercentage": 0.75,
        "slidingWindowSize": 500, "useCache": True, "onlyMyCode": True, "useRecentlyEdited": True,
        "useImports": True,
        # outcome
        "accepted": True, "time": 412, "prefix": "def add(a, b):\n    ", "suffix": "\n",
        "prompt": "<fim_prefix>def add(a, b):\n    <fim_suffix>\n<fim_middle>",
        "completion": "return a + b", "modelProvider": "ollama", "modelName": "qwen2.5-coder:1.5b",
        "completionOptions": {"temperature": 0.01}, "cacheHit": False,
        "filepath": "file:///home/alice/proj/calc.py", "gitRepo": "github.com/alice/proj",
        "completionId": cid, "uniqueId": "machine-1", "timestamp": T0,
    }  # fmt: skip
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not None}


def continue_next_edit(cid: str, **over: Any) -> dict[str, Any]:
    """A ``nextEditOutcome`` record (nextEditOutcome/index.ts)."""
    rec: dict[str, Any] = {
        "eventName": "nextEditOutcome", "schema": "0.2.0", "userId": "", "uniqueId": "machine-2",
        "userAgent": "Visual Studio Code/1.99.0 (Continue/1.1.40)", "selectedProfileId": "local",
        "elapsed": 630, "completionOptions": {}, "completionId": cid, "requestId": "req-1",
        "timestamp": T0 + 5_000, "fileUri": "file:///home/bob/app/main.ts",
        "workspaceDirUri": "file:///home/bob/app", "prompt": "<|editable_region|>let x = 1\n",
        "userEdits": "@@ -1 +1 @@\n-let x\n+let x = 1", "userExcerpts": "let x = 1",
        "originalEditableRange": "let x = 1\n", "completion": "const x = 1\n",
        "cursorPosition": {"line": 0, "character": 9}, "accepted": True, "aborted": False,
        "modelProvider": "inception", "modelName": "mercury-coder",
    }  # fmt: skip
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not None}


def tabby(ts: int, kind: str, body: dict[str, Any], user: str | None = "alice@example.com") -> dict[str, Any]:
    """A Tabby ``LogEntry``: ``{"user", "ts", "event": {kind: body}}`` (user omitted when None)."""
    entry: dict[str, Any] = {"ts": ts, "event": {kind: body}}
    if user is not None:
        entry["user"] = user
    return entry


def tabby_completion(cid: str, choices: list[str], ts: int = T0, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "completion_id": cid, "language": "python", "prompt": "<PRE> def f(x):\n    <SUF>\n<MID>",
        "segments": {"prefix": "def f(x):\n    ", "suffix": "\n", "filepath": "src/f.py",
                     "git_url": "https://github.com/a/b"},
        "choices": [{"index": i, "text": t} for i, t in enumerate(choices)],
        "user_agent": "vscode/1.99.0 tabby-vscode/1.20.0",
    }  # fmt: skip
    user = over.pop("user", "alice@example.com")
    body.update(over)
    return tabby(ts, "completion", {k: v for k, v in body.items() if v is not None}, user)


def action(event_kind: str, cid: str, ts: int, /, choice: int = 0, **extra: Any) -> dict[str, Any]:
    """A view/select/dismiss entry (logged without user: the server knows only the completion's)."""
    return tabby(ts, event_kind, {"completion_id": cid, "choice_index": choice, **extra}, None)


def do_import(tmp_path: Path, source: str, records: list[Any], **cfg: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    src = write_jsonl(tmp_path / "src" / ("autocomplete.jsonl" if source == "continue" else "2025-10-09.json"), records)
    report = run_import(source, [str(src)], str(tmp_path / "out"), ImportConfig(**cfg))
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    return report, events


def outcomes(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Outcome rows per suggestion, replayed by the pipeline's own replay (one session)."""
    rows: dict[str, dict[str, Any]] = {}
    end = max(e["ts_ms"] for e in events)
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_doc.setdefault(e["doc_id"], []).append({**e, "session_id": "s", "session_end_ts_ms": end})
    for evs in by_doc.values():
        for row in replay_document(evs, ReplaySettings()):
            rows[row["suggestion_id"]] = row
    return rows


def assert_balanced(report: dict[str, Any]) -> None:
    assert report["read"] == report["converted"] + report["skipped"] + report["refused"]


# --- Continue -------------------------------------------------------------------------


def test_continue_accepted_completion_becomes_shown_and_accepted_at_the_end_of_prefix(tmp_path: Path) -> None:
    report, events = do_import(tmp_path, "continue", [continue_autocomplete("c1")])
    shown, accepted = events
    assert shown["event_type"] == "shown" and accepted["event_type"] == "accepted"
    assert shown["offset"] == accepted["offset"] == len("def add(a, b):\n    ")
    assert shown["text"] == accepted["accepted_text"] == "return a + b"
    assert (shown["doc_version"], accepted["doc_version"]) == (0, 1)
    assert shown["model_id"] == "ollama/qwen2.5-coder:1.5b"
    assert shown["language"] == "python" and shown["latency_ms"] == 412
    assert shown["user_id"] == pseudonym("continue", "tok-alice") and "tok-alice" not in json.dumps(events)
    assert outcomes(events)["continue:c1"]["outcome"] == "kept"
    assert report["converted"] == 1 and report["events_by_type"] == {"accepted": 1, "shown": 1}


def test_continue_not_accepted_is_rejected_ten_seconds_after_display(tmp_path: Path) -> None:
    _, events = do_import(tmp_path, "continue", [continue_autocomplete("c1", accepted=False)])
    rejected = events[1]
    assert rejected["event_type"] == "rejected" and rejected["reason"] == "timeout"
    assert rejected["ts_ms"] == T0 + 10_000
    assert outcomes(events)["continue:c1"]["outcome"] == "rejected"


def test_continue_without_accepted_field_is_only_shown(tmp_path: Path) -> None:
    _, events = do_import(tmp_path, "continue", [continue_autocomplete("c1", accepted=None, suffix=None, time=None)])
    assert [e["event_type"] for e in events] == ["shown"]
    assert "suffix" not in events[0] and "latency_ms" not in events[0]
    assert outcomes(events)["continue:c1"]["outcome"] == "ignored"


def test_continue_signed_out_user_falls_back_to_the_machine_id(tmp_path: Path) -> None:
    _, events = do_import(tmp_path, "continue", [continue_autocomplete("c1", userId="")])
    assert {e["user_id"] for e in events} == {pseudonym("continue", "machine-1")}


def test_continue_iso_timestamp_of_older_builds_is_read(tmp_path: Path) -> None:
    _, events = do_import(tmp_path, "continue", [continue_autocomplete("c1", timestamp="2025-10-09T08:53:20.000Z")])
    assert events[0]["ts_ms"] == T0  # 2025-10-09T08:53:20Z is 1_760_000_000_000 ms


def test_continue_two_completions_in_one_file_are_separate_documents(tmp_path: Path) -> None:
    _, events = do_import(tmp_path, "continue", [continue_autocomplete("c1"), continue_autocomplete("c2", timestamp=T0 + 1)])
    assert len({e["doc_id"] for e in events}) == 2
    assert {r["outcome"] for r in outcomes(events).values()} == {"kept"}


def test_continue_no_code_record_is_refused_with_the_missing_field(tmp_path: Path) -> None:
    report, events = do_import(tmp_path, "continue", [continue_autocomplete("c1", prefix=None, completion=None)])
    assert events == [] and report["refused_by_reason"] == {"missing_field": 1}
    (row,) = [json.loads(x) for x in (tmp_path / "out" / "refused.jsonl").read_text().splitlines()]
    assert row["line"] == 1 and "completion is missing" in row["detail"] and json.loads(row["raw"])["completionId"] == "c1"


def test_continue_malformed_lines_are_refused_and_counts_add_up(tmp_path: Path) -> None:
    records: list[Any] = [
        continue_autocomplete("c1"),
        "{not json",
        b"\xff\xfe",
        "[1, 2]",
        continue_autocomplete("c2", completionId=7),
        continue_autocomplete("c3", timestamp="yesterday"),
        continue_autocomplete("c4", schema="0.1.0"),
        {"eventName": "chatInteraction", "schema": "0.2.0", "prompt": "hi"},
        "",
    ]
    report, _ = do_import(tmp_path, "continue", records)
    assert report["read"] == 8  # the blank line is not a record
    assert report["converted"] == 1
    assert report["skipped_by_reason"] == {"other_event:chatInteraction": 1}
    assert report["refused_by_reason"] == {"invalid_json": 3, "unsupported_schema": 1, "wrong_type": 2}
    assert_balanced(report)


def test_continue_accepted_next_edit_replaces_the_editable_range_and_is_kept(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "nextEditOutcome.jsonl", [
        continue_next_edit("n1"),
        continue_next_edit("n2", accepted=None, aborted=True),
        continue_next_edit("n3", accepted=False),
    ])  # fmt: skip
    report = run_import("continue", [str(src)], str(tmp_path / "out"))
    events = [json.loads(x) for x in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    n1 = [e for e in events if e["event_id"].startswith("continue-ne:n1:")]
    assert [e["event_type"] for e in n1] == ["shown", "accepted", "edit"]
    assert n1[2]["offset"] == len("const x = 1\n") and n1[2]["delete_len"] == len("let x = 1\n")
    assert n1[0]["prefix"] == "<|editable_region|>let x = 1\n" and n1[0]["language"] == "typescript"
    rows = outcomes(events)
    assert rows["continue-ne:n1"]["outcome"] == "kept" and rows["continue-ne:n1"]["final_text"] == "const x = 1\n"
    assert rows["continue-ne:n2"]["outcome"] == "rejected"
    assert [e.get("reason") for e in events if e["event_type"] == "rejected"] == ["other", None]
    assert rows["continue-ne:n3"]["outcome"] == "rejected"
    assert report["converted"] == 3


def test_every_continue_event_passes_contract_validation(tmp_path: Path) -> None:
    _, events = do_import(tmp_path, "continue", [continue_autocomplete("c1"), continue_autocomplete("c2", accepted=False)])
    for e in events:
        assert validate_object(e, "h").reason is None, e


# --- Tabby ----------------------------------------------------------------------------


def test_tabby_view_then_select_is_shown_then_accepted_whole_choice(tmp_path: Path) -> None:
    records = [
        tabby_completion("cmpl-1", ["return x * 2", "return x + x"]),
        action("view", "cmpl-1", T0 + 100, view_id="v1"),
        action("select", "cmpl-1", T0 + 900, view_id="v1", elapsed=800),
    ]
    report, events = do_import(tmp_path, "tabby", records, model_id="StarCoder-1B")
    shown, accepted = events
    assert shown["suggestion_id"] == accepted["suggestion_id"] == "tabby:cmpl-1:0"
    assert shown["text"] == accepted["accepted_text"] == "return x * 2"
    assert shown["offset"] == accepted["offset"] == len("def f(x):\n    ")
    assert shown["model_id"] == "StarCoder-1B" and shown["language"] == "python"
    assert shown["client"] == "vscode/1.99.0 tabby-vscode/1.20.0"
    assert {e["user_id"] for e in events} == {pseudonym("tabby", "alice@example.com")}
    assert outcomes(events)["tabby:cmpl-1:0"]["outcome"] == "kept"
    assert report["converted"] == 3 and report["skipped"] == 0


def test_tabby_line_selects_are_continued_partial_accepts(tmp_path: Path) -> None:
    records = [
        tabby_completion("cmpl-1", ["a = 1\nb = 2\nc = 3"]),
        action("view", "cmpl-1", T0 + 100),
        action("select", "cmpl-1", T0 + 200, kind="line"),
        action("select", "cmpl-1", T0 + 300, kind="line"),
        action("dismiss", "cmpl-1", T0 + 400),
    ]
    _, events = do_import(tmp_path, "tabby", records)
    accepts = [e for e in events if e["event_type"] == "accepted"]
    base = len("def f(x):\n    ")
    assert [(a["accepted_text"], a["offset"], a["doc_version"]) for a in accepts] == [
        ("a = 1\n", base, 1),
        ("b = 2\n", base + 6, 2),
    ]
    assert [e["doc_version"] for e in events if e["event_type"] == "rejected"] == [2]
    row = outcomes(events)["tabby:cmpl-1:0"]
    assert row["outcome"] == "kept" and row["accepted_text"] == "a = 1\nb = 2\n"


def test_tabby_full_select_after_a_line_select_accepts_the_rest(tmp_path: Path) -> None:
    records = [
        tabby_completion("cmpl-1", ["a = 1\nb = 2"]),
        action("view", "cmpl-1", T0 + 100),
        action("select", "cmpl-1", T0 + 200, kind="line"),
        action("select", "cmpl-1", T0 + 300),
        action("select", "cmpl-1", T0 + 400),
    ]
    report, events = do_import(tmp_path, "tabby", records)
    assert [e["accepted_text"] for e in events if e["event_type"] == "accepted"] == ["a = 1\n", "b = 2"]
    assert report["skipped_by_reason"] == {"nothing_left_to_accept": 1}
    assert outcomes(events)["tabby:cmpl-1:0"]["accepted_text"] == "a = 1\nb = 2"
    assert_balanced(report)


def test_tabby_dismissed_viewed_and_unseen_choices(tmp_path: Path) -> None:
    records = [
        tabby_completion("cmpl-1", ["x", "y"]),
        tabby_completion("cmpl-2", ["z"], ts=T0 + 50),  # never viewed
        action("view", "cmpl-1", T0 + 100, choice=0),
        action("view", "cmpl-1", T0 + 150, choice=1),
        action("dismiss", "cmpl-1", T0 + 200, choice=1, elapsed=50),
    ]
    report, events = do_import(tmp_path, "tabby", records)
    rows = outcomes(events)
    assert rows["tabby:cmpl-1:0"]["outcome"] == "ignored"
    assert rows["tabby:cmpl-1:1"]["outcome"] == "rejected"
    assert "tabby:cmpl-2:0" not in rows
    assert report["skipped_by_reason"] == {"never_viewed": 1}
    assert_balanced(report)


def test_tabby_select_without_view_gets_a_shown_at_the_completion_time(tmp_path: Path) -> None:
    _, events = do_import(tmp_path, "tabby", [tabby_completion("cmpl-1", ["x"]), action("select", "cmpl-1", T0 + 10)])
    assert [(e["event_type"], e["ts_ms"]) for e in events] == [("shown", T0), ("accepted", T0 + 10)]


def test_tabby_older_log_without_segments_and_user_inside_completion(tmp_path: Path) -> None:
    old = tabby_completion("cmpl-1", ["pass"], user=None, segments=None, user_agent=None)
    old["event"]["completion"]["user"] = "bob"
    report, events = do_import(tmp_path, "tabby", [old, action("view", "cmpl-1", T0 + 1)])
    (shown,) = events
    assert shown["prefix"] == old["event"]["completion"]["prompt"] and "suffix" not in shown
    assert shown["user_id"] == pseudonym("tabby", "bob") and shown["client"] == "tabby"
    assert report["converted"] == 2


def test_tabby_anonymous_server_uses_the_configured_user(tmp_path: Path) -> None:
    _, events = do_import(
        tmp_path, "tabby", [tabby_completion("cmpl-1", ["x"], user=None), action("view", "cmpl-1", T0 + 1)],
        anonymous_user="team-a",
    )
    assert events[0]["user_id"] == pseudonym("tabby", "team-a")


def test_tabby_malformed_and_unlinkable_records_are_refused_and_counts_add_up(tmp_path: Path) -> None:
    good = tabby_completion("cmpl-1", ["x"])
    records: list[Any] = [
        good,
        good,  # the same line twice (at-least-once logging)
        action("view", "cmpl-1", T0 + 1),
        action("select", "cmpl-9", T0 + 2),  # completion not in the inputs
        action("select", "cmpl-1", T0 + 3, choice=4),  # no such choice
        action("select", "cmpl-1", T0 + 4, kind="word"),
        {"ts": T0, "event": {"view": {"completion_id": "cmpl-1"}}},  # choice_index missing
        {"ts": -1, "event": {"view": {"completion_id": "cmpl-1", "choice_index": 0}}},
        {"ts": T0, "event": {"telemetry": {}}},
        {"ts": T0, "event": {"chat_completion": {"completion_id": "c", "input": [], "output": {"role": "assistant", "content": "hi"}}}},
        "not json at all",
    ]
    report, events = do_import(tmp_path, "tabby", records)
    assert report["read"] == 11
    assert report["converted"] == 2  # the completion and its view
    assert report["skipped_by_reason"] == {"chat_completion": 1, "duplicate_record": 1}
    assert report["refused_by_reason"] == {
        "invalid_json": 1, "missing_field": 1, "negative_value": 1, "unknown_choice": 1,
        "unknown_completion": 1, "unknown_event": 1, "wrong_type": 1,
    }  # fmt: skip
    assert_balanced(report)
    refused = [json.loads(x) for x in (tmp_path / "out" / "refused.jsonl").read_text().splitlines()]
    assert len(refused) == report["refused"] and all(r["raw"] and r["reason"] for r in refused)
    assert [e["event_type"] for e in events] == ["shown"]


def test_tabby_reimport_gives_identical_events(tmp_path: Path) -> None:
    records = [tabby_completion("cmpl-1", ["x"]), action("view", "cmpl-1", T0 + 1), action("select", "cmpl-1", T0 + 2)]
    _, first = do_import(tmp_path / "a", "tabby", records)
    _, second = do_import(tmp_path / "b", "tabby", records)
    assert first == second and len({e["event_id"] for e in first}) == len(first)


def test_every_tabby_event_passes_contract_validation(tmp_path: Path) -> None:
    records = [
        tabby_completion("cmpl-1", ["a\nb"]), action("view", "cmpl-1", T0 + 1),
        action("select", "cmpl-1", T0 + 2, kind="line"), action("dismiss", "cmpl-1", T0 + 3),
    ]  # fmt: skip
    _, events = do_import(tmp_path, "tabby", records)
    for e in events:
        assert validate_object(e, "h").reason is None, e


# --- command --------------------------------------------------------------------------


def test_import_of_a_missing_source_is_a_one_line_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input not found"):
        main(["--from", "tabby", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--quiet"])


def test_strict_import_fails_when_a_record_is_refused(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "autocomplete.jsonl", [continue_autocomplete("c1"), "{broken"])
    with pytest.raises(InputError, match=r"1 record\(s\) refused \(invalid_json=1\)"):
        main(["--from", "continue", str(src), "--out", str(tmp_path / "out"), "--strict", "--quiet"])


def test_import_reads_a_directory_of_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "events" / "2025-10-09.json", [tabby_completion("cmpl-1", ["x"])])
    write_jsonl(tmp_path / "events" / "2025-10-10.json", [action("select", "cmpl-1", T0 + 86_400_000)])
    assert main(["--from", "tabby", str(tmp_path / "events"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stage"] == "import" and report["files"] == 2 and report["events_by_type"] == {"accepted": 1, "shown": 1}


# --- through the pipeline -------------------------------------------------------------


def test_imported_logs_run_through_the_whole_pipeline(spark: object, tmp_path: Path, lake: str) -> None:
    from echo.jobs import run
    from tests.helpers import read_table

    write_jsonl(tmp_path / "continue" / "autocomplete.jsonl", [
        continue_autocomplete("c1"),
        continue_autocomplete("c2", accepted=False, timestamp=T0 + 60_000),
        continue_autocomplete("c3", accepted=None, timestamp=T0 + 120_000),
    ])  # fmt: skip
    write_jsonl(tmp_path / "tabby" / "2025-10-09.json", [
        tabby_completion("cmpl-1", ["a = 1\nb = 2\n"]),
        action("view", "cmpl-1", T0 + 100),
        action("select", "cmpl-1", T0 + 200, kind="line"),
        action("select", "cmpl-1", T0 + 300, kind="line"),
        tabby_completion("cmpl-2", ["zzz"], ts=T0 + 400),
        action("view", "cmpl-2", T0 + 500),
        action("dismiss", "cmpl-2", T0 + 600),
    ])  # fmt: skip
    run_import("continue", [str(tmp_path / "continue")], str(tmp_path / "out-c"))
    run_import("tabby", [str(tmp_path / "tabby")], str(tmp_path / "out-t"))
    events = [str(tmp_path / "out-c" / "events.jsonl"), str(tmp_path / "out-t" / "events.jsonl")]
    assert run.main(["--events", *events, "--lake", lake, "--quiet"]) == 0

    assert read_table(lake, "bronze/quarantine").empty
    sug = read_table(lake, "silver/suggestions").set_index("suggestion_id")
    assert sug["outcome"].to_dict() == {
        "continue:c1": "kept", "continue:c2": "rejected", "continue:c3": "ignored",
        "tabby:cmpl-1:0": "kept", "tabby:cmpl-2:0": "rejected",
    }  # fmt: skip
    assert sug.loc["tabby:cmpl-1:0", "final_text"] == "a = 1\nb = 2\n"
    assert sug.loc["continue:c1", "model_id"] == "ollama/qwen2.5-coder:1.5b"
    pairs = read_table(lake, "gold/refinement_pairs")
    assert set(pairs["suggestion_id"]) <= {"continue:c1", "tabby:cmpl-1:0"}
    metrics = read_table(lake, "gold/acceptance_metrics")
    assert int(metrics["shown"].sum()) == 5 and int(metrics["accepted"].sum()) == 2
