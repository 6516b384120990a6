"""CONTRACT.md 1.2: each quarantine reason, its precedence, and what is not a reason."""

from __future__ import annotations

import json
from typing import Any

from echo.stages.validate import validate_json_line
from tests.events import event


def shown(**over: Any) -> dict[str, Any]:
    return event(**{"event_type": "shown", "event_id": "e1", "ts_ms": 1, "user_id": "u", "doc_id": "d",
                    "doc_version": 0, "suggestion_id": "s", "model_id": "m", "offset": 0, "text": "x",
                    "prefix": "p", **over})  # fmt: skip


def edit(**over: Any) -> dict[str, Any]:
    return event(**{"event_type": "edit", "event_id": "e2", "ts_ms": 1, "user_id": "u", "doc_id": "d",
                    "doc_version": 1, "offset": 0, "delete_len": 0, "insert_text": "a", **over})  # fmt: skip


def reason(obj: Any) -> str | None:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()
    return validate_json_line(raw).reason


def test_valid_shown_is_accepted():
    assert reason(shown()) is None


def test_invalid_json_syntax():
    assert reason(b'{"event_id": "e1",') == "invalid_json"


def test_invalid_json_not_an_object():
    assert reason(b'[{"event_id": "e1"}]') == "invalid_json"


def test_invalid_json_invalid_utf8():
    assert reason(json.dumps(shown()).encode().replace(b'"d"', b'"d\xff"')) == "invalid_json"


def test_invalid_json_nan_constant():
    assert reason(json.dumps(shown()).replace('"ts_ms": 1', '"ts_ms": NaN').encode()) == "invalid_json"


def test_invalid_json_lone_surrogate():
    assert reason(json.dumps(shown()).replace('"x"', '"\\ud800"').encode()) == "invalid_json"


def test_missing_common_field():
    assert reason(shown(user_id=...)) == "missing_field"


def test_missing_type_specific_field():
    assert reason(edit(delete_len=...)) == "missing_field"


def test_null_counts_as_absent():
    assert reason(shown(prefix=None)) == "missing_field"


def test_missing_field_before_wrong_type():
    assert reason(shown(user_id=..., ts_ms="1")) == "missing_field"


def test_wrong_type_string_for_int():
    assert reason(shown(ts_ms="1")) == "wrong_type"


def test_wrong_type_float_for_int():
    assert reason(edit(offset=1.5)) == "wrong_type"


def test_wrong_type_bool_for_int():
    assert reason(edit(delete_len=True)) == "wrong_type"


def test_wrong_type_in_optional_field():
    assert reason(shown(latency_ms="fast")) == "wrong_type"


def test_wrong_type_before_unknown_event_type():
    assert reason(shown(event_type="nope", doc_id=["a"])) == "wrong_type"


def test_unknown_event_type():
    assert reason(shown(event_type="accept")) == "unknown_event_type"


def test_unknown_event_type_checks_only_common_fields():
    assert reason({"event_id": "e", "event_type": "", "ts_ms": 1, "user_id": "u", "doc_id": "d", "doc_version": 0}) == "unknown_event_type"


def test_negative_offset():
    assert reason(edit(offset=-1)) == "negative_value"


def test_negative_delete_len():
    assert reason(edit(delete_len=-2)) == "negative_value"


def test_negative_version():
    assert reason(shown(doc_version=-7)) == "negative_value"


def test_negative_value_before_text_too_large():
    assert reason(edit(offset=-1, insert_text="a" * 1_048_577)) == "negative_value"


def test_text_too_large_counts_utf8_bytes():
    # 262,145 three-byte characters = 786,435 bytes: fine; 349,526 = 1,048,578 bytes: too large
    assert reason(edit(insert_text="€" * 262_145)) is None
    assert reason(edit(insert_text="€" * 349_526)) == "text_too_large"


def test_text_exactly_at_limit_is_accepted():
    assert reason(shown(prefix="a" * 1_048_576)) is None
    assert reason(shown(prefix="a" * 1_048_577)) == "text_too_large"


def test_fields_of_other_types_are_ignored():
    assert reason(shown(delete_len="x", insert_text=5)) is None


def test_other_keys_are_ignored():
    assert reason(shown(extra={"nested": [1, 2]})) is None


def test_same_content_any_key_order_has_same_identity():
    a = json.dumps(shown(), sort_keys=True).encode()
    b = json.dumps(dict(reversed(list(shown().items()))), indent=2).replace("\n", " ").encode()
    assert a != b
    assert validate_json_line(a).content_hash == validate_json_line(b).content_hash
