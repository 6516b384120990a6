"""The user model: people writing real code over days, with a completion model at hand.

A :class:`UserSim` is a generator: it yields a :class:`Request` whenever the IDE asks
for a completion and receives the proposal text, so a shard can batch the requests
of all its users into one ``propose_batch`` call. Every event goes to the shard's sink
in the user's time order; every change goes through the document's :class:`DocTruth`.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import Levenshtein

from echo.simulate.config import SimConfig
from echo.simulate.corpus import Corpus
from echo.simulate.truth import DocTruth, Suggestion, row_of

DAY_MS = 86_400_000
CLIENTS = (
    "vscode/1.88.0 echo/0.9.3",
    "vscode/1.89.1 echo/0.9.4",
    "jetbrains/2024.1 echo/0.9.3",
    "neovim/0.9.5 echo/0.9.2",
)
COMMENT = {"python": "#", "ruby": "#", "shellscript": "#", "sql": "--", "lua": "--"}
_CHUNK = re.compile(r"\n[ \t]*|[ \t]+|\w{1,8}|[^\w\s]{1,3}")
_WORDS = re.compile(r"\s*\S+")
_NEIGHBOURS = "qwertyuiopasdfghjklzxcvbnm"


@dataclass(frozen=True)
class Request:
    """One completion request: which model, the context, and the code the user will write."""

    model_index: int
    prefix: str
    suffix: str
    truth: str


@dataclass
class PendingFix:
    sug: Suggestion
    a: int
    proposal: str
    target: str
    due_ms: int


@dataclass
class Doc:
    doc_id: str
    language: str
    target: str
    text: str
    cursor: int
    pos: int
    end: int
    truth: DocTruth
    version: int = 0
    pending: list[PendingFix] = field(default_factory=list)

    @property
    def intended(self) -> str:
        return self.target[self.pos : self.end]


def align_len(proposal: str, intended: str) -> int:
    """How much of ``intended`` the proposal stands for (same lines, end of line if close)."""
    idx = 0
    for _ in range(proposal.count("\n")):
        j = intended.find("\n", idx)
        if j < 0:
            return len(intended)
        idx = j + 1
    last = len(proposal) - (proposal.rfind("\n") + 1)
    line_end = intended.find("\n", idx)
    if line_end < 0:
        line_end = len(intended)
    if last >= line_end - idx - 2:
        return line_end
    return idx + last


def common_words(proposal: str, intended: str) -> list[str]:
    """The leading words of the proposal that match what the user intends."""
    out: list[str] = []
    acc = ""
    for w in _WORDS.findall(proposal):
        if not intended.startswith(acc + w):
            break
        acc += w
        out.append(w)
    return out


class UserSim:
    """One simulated user over all days."""

    def __init__(
        self,
        index: int,
        cfg: SimConfig,
        corpus: Corpus,
        rates: dict[str, float],
        emit: Callable[[dict[str, Any], int], None],
        rows: list[dict[str, Any]],
        counts: dict[str, int],
        model_ids: list[str],
        files_by_lang: dict[str, list[str]],
        skew_max_ms: int = 300_000,
    ) -> None:
        self.cfg = cfg
        self.user_id = f"{cfg.user_prefix}-{index:05d}"
        # a cohort member is the same person in every paired run (the behaviour's random
        # stream is keyed by the cohort); its ids come from a stream of its own user id, so
        # the runs' events never share an id
        person = f"{cfg.cohort}-{index:05d}" if cfg.cohort else self.user_id
        self.rng = rng = random.Random(f"{cfg.seed}|user|{person}")
        self.id_rng = random.Random(f"{cfg.seed}|ids|{self.user_id}") if cfg.cohort else rng
        self.corpus = corpus
        self.files_by_lang = files_by_lang
        self.emit_fn = emit
        self.rows = rows
        self.counts = counts
        self.model_ids = model_ids
        self.lost_rate = rates.get("lost_edit", 0.0)
        self.ambiguous_rate = rates.get("ambiguous_version", 0.0)
        self.cps = cfg.typing_cps * math.exp(rng.gauss(0, 0.25))
        self.threshold = min(0.97, max(0.55, rng.gauss(cfg.accept_similarity, 0.06)))
        self.attention = min(0.95, max(0.15, rng.gauss(cfg.attention, 0.12)))
        self.client = CLIENTS[rng.randrange(len(CLIENTS))]
        self.skew = 0
        if rates.get("clock_skew", 0.0) and rng.random() < rates["clock_skew"]:
            self.skew = rng.randint(1, max(1, skew_max_ms)) * rng.choice((-1, 1))
            counts["clock_skew_users"] += 1
        self.t = 0
        self.docs: list[Doc] = []
        self.used_paths: set[str] = set()
        self.all_docs: list[tuple[Doc, str]] = []  # (document, its text at version 0)
        self.model = 0
        self.window_ms = cfg.refine_window_s * 1000

    # ----- events -----
    def _id(self) -> str:
        return f"{self.id_rng.getrandbits(128):032x}"

    def _event(self, doc: Doc, etype: str, **fields: Any) -> dict[str, Any]:
        ev = {
            "event_id": self._id(),
            "event_type": etype,
            "ts_ms": self.t + self.skew,
            "user_id": self.user_id,
            "doc_id": doc.doc_id,
            "doc_version": doc.version,
            "language": doc.language,
            "client": self.client,
        }
        ev.update(fields)
        return ev

    def _change(
        self,
        doc: Doc,
        offset: int,
        delete_len: int,
        insert: str,
        *,
        accept_of: Suggestion | None = None,
        first_accept: bool = False,
    ) -> None:
        assert offset >= 0 and offset + delete_len <= len(doc.text)
        doc.text = doc.text[:offset] + insert + doc.text[offset + delete_len :]
        doc.version += 1
        shift = len(insert) - delete_len
        if doc.cursor >= offset + delete_len:
            doc.cursor += shift
        elif doc.cursor > offset:
            doc.cursor = offset + len(insert)
        for p in doc.pending:
            if offset + delete_len <= p.a:
                p.a += shift
        ts = self.t + self.skew
        if accept_of is not None:
            ev = self._event(
                doc,
                "accepted",
                suggestion_id=accept_of.suggestion_id,
                offset=offset,
                accepted_text=insert,
            )
            doc.truth.change(ts, offset, 0, insert, accept_of=accept_of, first_accept=first_accept)
            self.emit_fn(ev, self.t)
            return
        ev = self._event(doc, "edit", offset=offset, delete_len=delete_len, insert_text=insert)
        rng = self.rng
        if self.lost_rate and rng.random() < self.lost_rate:
            self.counts["lost_edit"] += 1
            doc.truth.change(ts, offset, delete_len, insert, lost=True)
            return
        ambiguous = bool(self.ambiguous_rate) and rng.random() < self.ambiguous_rate
        doc.truth.change(ts, offset, delete_len, insert, ambiguous=ambiguous)
        self.emit_fn(ev, self.t)
        if ambiguous:
            self.counts["ambiguous_version"] += 1
            other = dict(
                ev, event_id=self._id(), insert_text=insert + rng.choice(("x", " ", "_", "0"))
            )
            self.emit_fn(other, self.t)

    def _wait(self, seconds: float) -> None:
        self.t += max(1, int(seconds * 1000))

    def _type(self, doc: Doc, text: str) -> None:
        """Type ``text`` at the cursor, a few characters or a word at a time, with typos."""
        rng = self.rng
        for m in _CHUNK.finditer(text):
            chunk = m.group()
            self._wait(
                len(chunk) / self.cps * math.exp(rng.gauss(0, 0.35))
                + (0.4 if chunk[0] == "\n" else 0)
            )
            if len(chunk) >= 2 and chunk[0].isalpha() and rng.random() < self.cfg.typo_rate:
                i = rng.randrange(1, len(chunk))
                bad = chunk[:i] + _NEIGHBOURS[rng.randrange(len(_NEIGHBOURS))]
                self._change(doc, doc.cursor, 0, bad)
                self._wait(0.3 + rng.expovariate(2.0))
                wrong = len(bad) - i
                self._change(doc, doc.cursor - wrong, wrong, "")  # backspace
                self._wait(0.15)
                rest = chunk[i:]
                if rest:
                    self._change(doc, doc.cursor, 0, rest)
            else:
                self._change(doc, doc.cursor, 0, chunk)

    # ----- documents -----
    def _open_doc(self) -> Doc:
        rng = self.rng
        langs = sorted(self.files_by_lang)
        for _ in range(50):
            files = self.files_by_lang[langs[rng.randrange(len(langs))]]
            cf = self.corpus.load(files[rng.randrange(len(files))])
            if cf is not None:
                break
        else:
            raise RuntimeError("no readable corpus file found after 50 tries")
        text = cf.text
        if len(text) > self.cfg.max_doc_chars:
            start = rng.randrange(len(text) - self.cfg.max_doc_chars)
            start = text.find("\n", start) + 1
            stop = text.rfind("\n", start, start + self.cfg.max_doc_chars) + 1
            text = text[start:stop] if stop > start else text[: self.cfg.max_doc_chars]
        n = len(text)
        head = text.rfind("\n", 0, int(n * rng.uniform(0.0, 0.3))) + 1
        tail = text.find("\n", int(n * rng.uniform(0.85, 1.0)))
        tail = n if tail < 0 or tail <= head else tail + 1
        doc_id = f"{self.user_id}:{cf.path}"
        if doc_id in self.used_paths:
            doc_id = f"{doc_id}#{len(self.used_paths)}"
        self.used_paths.add(doc_id)
        doc = Doc(
            doc_id,
            cf.language,
            text,
            text[:head] + text[tail:],
            head,
            head,
            tail,
            DocTruth(self.window_ms, self.cfg.min_refine_similarity, self.rows),
        )
        self.all_docs.append((doc, doc.text))
        return doc

    def _flush_pending(self, doc: Doc, force: bool) -> None:
        while doc.pending and (force or doc.pending[0].due_ms <= self.t):
            p = doc.pending.pop(0)
            self._wait(2 + self.rng.expovariate(0.5))
            self._fix(doc, p.a, p.proposal, p.target)

    # ----- refinement -----
    def _fix(self, doc: Doc, a: int, proposal: str, target: str) -> None:
        """Turn ``proposal`` (at ``a``) into ``target`` with keystroke-level edits."""
        rng = self.rng
        shift = 0
        for op in Levenshtein.opcodes(proposal, target):
            if op.tag == "equal":
                continue
            at = a + op.src_start + shift
            old = op.src_end - op.src_start
            new = target[op.dest_start : op.dest_end]
            self._wait(0.5 + rng.expovariate(1.0))
            if old and new and rng.random() < 0.5:  # select and type over
                self._change(doc, at, old, new)
            else:
                left = old
                while left:  # backspace, a few characters per event
                    k = min(left, rng.randint(1, 4))
                    self._change(doc, at + left - k, k, "")
                    left -= k
                    self._wait(0.12)
                pos = at
                for m in _CHUNK.finditer(new):
                    self._change(doc, pos, 0, m.group())
                    pos += len(m.group())
                    self._wait(len(m.group()) / self.cps)
            shift += len(new) - old

    def _suggest(self, doc: Doc) -> Generator[Request, str, None]:
        rng, cfg = self.rng, self.cfg
        intended = doc.intended
        if not intended.strip():
            return
        prefix = doc.text[max(0, doc.cursor - 1500) : doc.cursor]
        suffix = doc.text[doc.cursor : doc.cursor + 400]
        proposal = yield Request(self.model, prefix, suffix, intended[:400])
        if not proposal:
            return
        latency = int(min(5000, 60 + rng.lognormvariate(5.3, 0.5)))
        self.t += latency
        sug = Suggestion(
            "sg-" + self._id(),
            self.user_id,
            doc.doc_id,
            self.model_ids[self.model],
            doc.language,
            self.t + self.skew,
            proposal,
        )
        self.emit_fn(
            self._event(
                doc,
                "shown",
                suggestion_id=sug.suggestion_id,
                model_id=sug.model_id,
                offset=doc.cursor,
                text=proposal,
                prefix=prefix,
                suffix=suffix,
                latency_ms=latency,
            ),
            self.t,
        )
        self._wait(0.3 + rng.expovariate(1.5))
        L = align_len(proposal, intended)
        target = intended[:L]
        sim = Levenshtein.normalized_similarity(proposal, target)
        looked = rng.random() < self.attention
        words = common_words(proposal, intended)
        if looked and sim >= self.threshold:
            if rng.random() < cfg.partial_accept_rate and len(words) > 1:
                self._accept_words(doc, sug, words[: rng.randint(1, len(words) - 1)])
            else:
                self._accept_full(doc, sug, proposal, target, "accepted")
        elif looked and words and sum(map(len, words)) >= 4 and rng.random() < 0.5:
            self._accept_words(doc, sug, words)
        elif looked and rng.random() < cfg.hasty_accept_rate:
            self._accept_full(doc, sug, proposal, target, "hasty")
        else:
            reason = ""
            if looked and rng.random() >= cfg.ignore_rate:
                reason = rng.choice(("escape", "escape", "escape", "other"))
            elif not looked and rng.random() < 0.3:
                reason = rng.choice(("typed_over", "timeout"))
            if reason:
                sug.intent = "rejected"
                self.emit_fn(
                    self._event(doc, "rejected", suggestion_id=sug.suggestion_id, reason=reason),
                    self.t,
                )
                self.rows.append(row_of(sug, "rejected", None, None, None, 0))
            else:
                self.rows.append(row_of(sug, "ignored", None, None, None, 0))

    def _accept_words(self, doc: Doc, sug: Suggestion, words: list[str]) -> None:
        sug.intent = "partial"
        for i, w in enumerate(words):
            if i:
                self._wait(0.25 + self.rng.expovariate(3.0))
            self._change(doc, doc.cursor, 0, w, accept_of=sug, first_accept=i == 0)
            doc.pos += len(w)

    def _accept_full(
        self, doc: Doc, sug: Suggestion, proposal: str, target: str, intent: str
    ) -> None:
        rng = self.rng
        sug.intent = intent
        a = doc.cursor
        self._change(doc, a, 0, proposal, accept_of=sug, first_accept=True)
        doc.pos += len(target)
        if proposal == target:
            if (
                rng.random() < 0.08 and len(proposal) > 3
            ):  # churn: delete a character and put it back
                i = rng.randrange(len(proposal))
                self._wait(1.0)
                self._change(doc, a + i, 1, "")
                self._wait(0.4)
                self._change(doc, a + i, 0, proposal[i])
            return
        sim = Levenshtein.normalized_similarity(proposal, target)
        if sim < 0.35 or (intent == "hasty" and rng.random() < 0.4):
            self._wait(0.5 + rng.expovariate(1.0))
            self._change(doc, a, len(proposal), "")  # delete the whole suggestion
            doc.pos -= len(target)
            return
        if rng.random() < self.cfg.deferred_fix_rate:
            due = self.t + int(rng.uniform(20, 900) * 1000)
            doc.pending.append(PendingFix(sug, a, proposal, target, due))
            return
        self._fix(doc, a, proposal, target)

    # ----- timeline -----
    def run(self) -> Generator[Request, str, None]:
        cfg, rng = self.cfg, self.rng
        gap_ms = cfg.session_gap_s * 1000
        for day in range(cfg.days):
            day_start = cfg.start_ts_ms + day * DAY_MS
            self.t = max(
                self.t + gap_ms + 60_000, day_start + int(rng.uniform(6.5, 10.5) * 3_600_000)
            )
            n_sessions = max(1, round(rng.gauss(cfg.sessions_per_day, 0.7)))
            for s in range(n_sessions):
                if s:
                    if rng.random() < 0.15:  # just over the gap
                        self._wait(cfg.session_gap_s + rng.uniform(5, 120))
                    else:
                        self._wait(cfg.session_gap_s + rng.uniform(300, 5400))
                self.model = rng.randrange(len(self.model_ids))
                minutes = min(120.0, max(3.0, rng.expovariate(1 / cfg.session_minutes)))
                yield from self._session(int(minutes * 60_000))
        for doc in self.docs:
            self._flush_pending(doc, force=True)
            doc.truth.close()

    def _session(self, active_ms: int) -> Generator[Request, str, None]:
        cfg, rng = self.cfg, self.rng
        gap_s = cfg.session_gap_s
        end = self.t + active_ms
        while self.t < end:
            if not self.docs or rng.random() < 0.02:
                if len(self.docs) >= cfg.languages_per_user or (self.docs and rng.random() < 0.7):
                    self.docs.append(
                        self.docs.pop(rng.randrange(len(self.docs)))
                    )  # switch to an open doc
                else:
                    self.docs.append(self._open_doc())
            doc = self.docs[-1]
            if doc.pos >= doc.end:
                self._flush_pending(doc, force=True)
                doc.truth.close()
                self.docs.pop()
                continue
            self._flush_pending(doc, force=False)
            x = rng.random()
            if x < 0.002:  # a pause: reading, coffee, a meeting (always under the session gap)
                long = rng.random() < 0.1
                self._wait(gap_s * rng.uniform(0.85, 0.95) if long else rng.uniform(60, 600))
                continue
            if x < 0.002 + cfg.side_edit_rate:
                self._side_edit(doc)
                continue
            m = _CHUNK.match(doc.intended)
            chunk = m.group() if m else doc.intended[:1]
            self._type(doc, chunk)
            doc.pos += len(chunk)
            if rng.random() < 0.04:  # thinking
                self._wait(rng.uniform(1, 20))
            p = cfg.request_rate * (2.5 if chunk.startswith("\n") else 1.0)
            if rng.random() < p:
                yield from self._suggest(doc)

    def _side_edit(self, doc: Doc) -> None:
        """A comment line added elsewhere (before or after the cursor); half are undone."""
        rng = self.rng
        limit = min([p.a for p in doc.pending], default=doc.cursor)
        if rng.random() < 0.5 and limit > 0:
            at = doc.text.rfind("\n", 0, rng.randrange(limit)) + 1
        else:
            nl = doc.text.find("\n", doc.cursor + rng.randrange(max(1, len(doc.text) - doc.cursor)))
            at = len(doc.text) if nl < 0 else nl + 1
        note = f"{COMMENT.get(doc.language, '//')} TODO({self.user_id[-3:]}): check this\n"
        self._wait(2 + rng.expovariate(0.2))
        self._change(doc, at, 0, note)
        if rng.random() < 0.5:
            self._wait(1 + rng.expovariate(0.5))
            self._change(doc, at, len(note), "")  # undo
