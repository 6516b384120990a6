"""Secret and PII scrubbing: pure Python, applied to every text before it reaches gold.

:func:`scrub_text` replaces each match of :data:`RULES` in one string with a typed
placeholder (``<SECRET:aws_access_key>``, ``<EMAIL>``, ...) and counts matches per type.
:func:`scrub_pair` scrubs the four texts of a refinement pair together: it scans
``prefix + final_text + suffix`` and ``prefix + proposal + suffix`` so that a secret cut
by the cursor (its first half in the prefix, the rest in the completion) is found and
redacted on both sides. Both run inside Spark tasks (``mapInArrow``) and in tests.

Rules are deliberately specific (provider prefixes, fixed lengths, structure): a
high-entropy catch-all would also eat commit hashes, UUIDs and base64 test data, which
are legitimate code. Look-alikes that must survive are tested in tests/test_scrub.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One scrubbing rule: matches of ``pattern`` (or of its group ``group``) become
    ``placeholder``."""

    type: str
    pattern: re.Pattern[str]
    placeholder: str
    group: int = 0


def _secret(type_: str, pattern: str, flags: int = 0, group: int = 0) -> Rule:
    return Rule(type_, re.compile(pattern, flags), f"<SECRET:{type_}>", group)


#: a line break: a real one, or the "\n" / "\r\n" escape of a string literal in code
_NL = r"(?:\r?\n|(?:\\r)?\\n)"

#: the start of a key body: 16+ base64 characters in a row, with a digit, "+" or "/" among
#: them (a 64-character base64 line nearly always has one; an identifier has none)
_B64_RUN = r"(?=[A-Za-z]*[0-9+/])[A-Za-z0-9+/=]{16}"

#: The rules, applied in this order (earlier rules win where matches overlap).
RULES: tuple[Rule, ...] = (
    # -----BEGIN (RSA |EC |OPENSSH |ENCRYPTED |PGP )PRIVATE KEY( BLOCK)----- ... END, or up to
    # the end of the text when the END line is cut off. Only with a key body: the header
    # line ends (a newline, or a "\n" escape inside a string literal), optional PEM
    # headers (Proc-Type:, DEK-Info:, Version:) follow, then a base64 run. A
    # bare header (a parser's constant, a startswith() test, a regex) is not a secret.
    _secret(
        "private_key",
        rf"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----[ \t]*{_NL}"
        rf"(?:[A-Za-z][A-Za-z0-9-]*:[^\r\n\\]*{_NL})*(?:[ \t\r\n]|{_NL})*{_B64_RUN}"
        r".*?(?:-----END \1PRIVATE KEY\2-----|\Z)",
        re.DOTALL,
    ),
    # the body and END line of a key whose BEGIN line lies before the text (a base64 run,
    # not just indentation, before the END line)
    _secret(
        "private_key",
        rf"\A(?:\s|{_NL})*{_B64_RUN}(?:[A-Za-z0-9+/=\s]|{_NL})*"
        r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    ),
    _secret(
        "aws_access_key",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}(?![A-Za-z0-9])",
    ),
    _secret(
        "aws_secret_key",
        r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
        group=1,
    ),
    _secret(
        "github_token", r"(?<![A-Za-z0-9_])(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}(?![A-Za-z0-9_])"
    ),
    _secret("github_token", r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{40,}(?![A-Za-z0-9_])"),
    _secret("slack_token", r"(?<![A-Za-z0-9])xox[abposre]-[A-Za-z0-9-]{10,}(?![A-Za-z0-9-])"),
    _secret(
        "slack_webhook",
        r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}",
    ),
    _secret(
        "stripe_key", r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}(?![A-Za-z0-9_])"
    ),
    # sk-..., sk-proj-..., sk-svcacct-...: at least 20 chars after sk-, with a digit
    _secret(
        "openai_key",
        r"(?<![A-Za-z0-9_-])sk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])",
    ),
    _secret("google_api_key", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
    # header.payload.signature, both JSON parts base64url of '{"'
    _secret(
        "jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{10,}"
    ),
    # scheme://user:PASSWORD@host (only the password is replaced)
    _secret("password", r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]+:([^\s@/'\"]+)@", group=1),
    # password = "..." style assignments of well-known secret names (only the value)
    _secret(
        "password",
        r"(?i:\b(?:password|passwd|pwd|secret_key|client_secret|api_key|apikey|access_token|auth_token))"
        r"[\"']?\s*[:=]\s*([\"'])([^\"'\s]{4,})\1",
        group=2,
    ),
    # a dotted domain ending in a letters-only TLD: user@localhost, pkg@1.2.3,
    # @decorator.name (no local part), git@host:org/repo (SSH remote) and
    # scheme://user@host (URL user info) are not addresses
    Rule(
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+/-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
            r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-]|:\S)"
        ),
        "<EMAIL>",
    ),
)

#: Every type a rule may report, in a fixed order (report columns).
TYPES: tuple[str, ...] = tuple(dict.fromkeys(r.type for r in RULES))

Span = tuple[int, int, str]  # start, end, placeholder


def find_secrets(text: str, rules: Sequence[Rule] = RULES) -> list[tuple[int, int, Rule]]:
    """Non-overlapping matches ``(start, end, rule)`` in ``text``, earlier rules first."""
    taken: list[tuple[int, int, Rule]] = []
    for rule in rules:
        for m in rule.pattern.finditer(text):
            s, e = m.span(rule.group)
            if s == e or any(s < te and ts < e for ts, te, _ in taken):
                continue
            taken.append((s, e, rule))
    return sorted(taken, key=lambda t: t[0])


def _apply(text: str, spans: list[Span]) -> str:
    """Replace the (possibly overlapping) spans; overlapping ones merge into the first."""
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for s, e, placeholder in sorted(spans):
        if e <= pos:
            continue
        if s < pos:  # overlaps the previous replacement: extend it
            pos = e
            continue
        out.append(text[pos:s])
        out.append(placeholder)
        pos = e
    out.append(text[pos:])
    return "".join(out)


def scrub_text(text: str | None, rules: Sequence[Rule] = RULES) -> tuple[str | None, Counter[str]]:
    """``text`` with every secret replaced by its placeholder, and the counts per type."""
    counts: Counter[str] = Counter()
    if not text:
        return text, counts
    matches = find_secrets(text, rules)
    for _, _, rule in matches:
        counts[rule.type] += 1
    return _apply(text, [(s, e, r.placeholder) for s, e, r in matches]), counts


@dataclass(frozen=True)
class ScrubbedPair:
    prefix: str | None
    suffix: str | None
    proposal: str | None
    final_text: str | None
    counts: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def scrub_pair(
    prefix: str | None,
    suffix: str | None,
    proposal: str | None,
    final_text: str | None,
    rules: Sequence[Rule] = RULES,
) -> ScrubbedPair:
    """Scrub the four texts of a pair, finding secrets that straddle the cursor.

    The document around the completion reads ``prefix + middle + suffix`` (middle the
    final text, then the proposal); each match is redacted in every part it touches.
    Counts: every match of the final text's reading, plus those of the proposal's
    reading that touch the proposal (one lying wholly in prefix or suffix was counted
    already), so a secret both in the proposal and the final text counts twice.
    """
    pre, suf = prefix or "", suffix or ""
    spans: dict[str, list[Span]] = {"prefix": [], "suffix": [], "proposal": [], "final_text": []}
    counts: Counter[str] = Counter()
    for name, middle in (("final_text", final_text or ""), ("proposal", proposal or "")):
        text = pre + middle + suf
        bounds = {"prefix": (0, len(pre)), name: (len(pre), len(pre) + len(middle)),
                  "suffix": (len(pre) + len(middle), len(text))}  # fmt: skip
        for s, e, rule in find_secrets(text, rules):
            touched = [part for part, (ps, pe) in bounds.items() if s < pe and ps < e]
            if name == "proposal" and "proposal" not in touched:
                continue
            counts[rule.type] += 1
            for part in touched:
                ps, pe = bounds[part]
                spans[part].append((max(s, ps) - ps, min(e, pe) - ps, rule.placeholder))

    def out(value: str | None, part: str) -> str | None:
        return value if value is None else _apply(value, spans[part])

    return ScrubbedPair(
        out(prefix, "prefix"),
        out(suffix, "suffix"),
        out(proposal, "proposal"),
        out(final_text, "final_text"),
        counts,
    )
