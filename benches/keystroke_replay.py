#!/usr/bin/env python3
"""Keystroke replay: completion latency as a user meets it, cria vs llama-server.

Replays editing sessions keystroke by keystroke, at a fixed interval, against
``cria lsp`` (driven like cria's editor plugins) and against llama.cpp's
``llama-server`` ``/infill`` (driven like llama.vim), in the same run, and
prints one markdown table per file and scenario.  The scenarios:

* ``open-type``: open the file and start typing at once;
* ``open-wait-type``: open the file, read for 2 s, then type;
* ``switch``: type in file A, switch to file B and type a little there,
  switch back to A and type (timed: back in A);
* ``jump``: type in a file, jump ~300 lines away and type there (timed:
  after the jump);
* ``steady``: the steady state: one untimed warm-up completion (up to 60 s)
  after opening, then type.

Only ``steady`` has a warm-up; in every other scenario the first suggestion
comes as late as it comes.  Each table gives the time from the first
keystroke of the timed phase to the first suggestion shown, and the latency
per keystroke of that phase (p50/p95/max of answered requests, empty answers,
superseded requests), for both servers, with the ratio llama.cpp / cria
(above 1: cria is faster).  Progress goes to stderr, the tables to stdout.
Standard library only.

See benches/README.md ("Keystroke replay") for what exactly is measured.
"""

from __future__ import annotations

import argparse
import glob
import heapq
import http.client
import json
import os
import queue
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
DEFAULT_SOURCES = [DATA / "ledger.py", DATA / "header_value_parser.py"]
CURSOR_MARKER = "# keystroke-replay: cursor"
JUMP_MARKER = "# keystroke-replay: jump"
INDENT_UNIT = 4
QUICK_CHARS = 40  # --quick types this many characters of each body
B_CHARS = 40  # in `switch`, at most this much of B's first body line is typed
WARMUP_BUDGET_MS = 60_000
STEADY_SETTLE_S = 0.5  # steady: from the end of the warm-up to the first keystroke

SCENARIOS = {
    "open-type": "open the file and start typing at once (first keystroke one interval after didOpen)",
    "open-wait-type": "open the file, read it for {read} s, then type",
    "switch": "type in A (half the body), switch to B and type a little, switch back to A and type the rest",
    "jump": "type the body in the file, then jump to the jump site ({jump} lines away) and type there",
    "steady": "steady state: one untimed warm-up completion at the cursor after opening (up to 60 s), then type",
}
TIMED_PHASE = {
    "open-type": "from the first keystroke after opening",
    "open-wait-type": "from the first keystroke, 2 s after opening",
    "switch": "from the first keystroke after switching back to A",
    "jump": "from the first keystroke after the jump",
    "steady": "from the first keystroke after the warm-up",
}


def log(message: str) -> None:
    print(f"keystroke-replay: {message}", file=sys.stderr, flush=True)


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# ---------------------------------------------------------------------------
# The files, and the keystrokes an editor would send.


@dataclass
class Keystroke:
    """One keystroke: the edit it makes and the editor state after it."""

    label: str  # what was typed, for logs ("a", "<enter>", "<bs>")
    start: tuple[int, int]  # (line, column) of the replaced range, 0-based
    end: tuple[int, int]
    text: str  # inserted text
    cursor: tuple[int, int]  # cursor after the edit
    lines: list[str]  # the whole document after the edit, as lines


@dataclass
class DataFile:
    """A file to type into: its text as opened and where typing happens."""

    path: Path
    name: str
    lines: list[str]  # as opened: each marker line is an empty line indented like it
    cursor: tuple[int, int]  # the typing site (end of the emptied marker line)
    jump: tuple[int, int] | None  # the jump site, likewise
    body: str  # typed at the cursor
    jump_body: str | None  # typed at the jump site


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def load_data_file(path: Path, body_path: Path | None, quick: bool) -> DataFile:
    lines = path.read_text().split("\n")
    sites: dict[str, tuple[int, int]] = {}
    for marker in (CURSOR_MARKER, JUMP_MARKER):
        rows = [i for i, line in enumerate(lines) if line.strip() == marker]
        if len(rows) > 1:
            raise SystemExit(f"{path}: more than one line `{marker}`")
        if rows:
            base = indent_of(lines[rows[0]])
            lines[rows[0]] = " " * base
            sites[marker] = (rows[0], base)
    if CURSOR_MARKER not in sites:
        raise SystemExit(f"{path}: no line `{CURSOR_MARKER}`")
    body = (body_path or path.with_name(path.stem + "_body.txt")).read_text().rstrip("\n")
    jump_path = path.with_name(path.stem + "_jump_body.txt")
    jump_body = jump_path.read_text().rstrip("\n") if jump_path.exists() else None
    if quick:
        body = body[:QUICK_CHARS]
        jump_body = jump_body[:QUICK_CHARS] if jump_body else jump_body
    return DataFile(path, path.name, lines, sites[CURSOR_MARKER], sites.get(JUMP_MARKER), body, jump_body)


def type_text(lines: list[str], cursor: tuple[int, int], base: int, text: str, enter_first: bool = False) -> list[Keystroke]:
    """The keystrokes that type ``text`` at ``cursor``, each with the document after it.

    ``text`` keeps its own relative indentation, counted from ``base``: Enter
    inserts a newline plus auto-indentation (the current line's, one level
    more after a ``:``), Backspace removes one indentation level, Tab adds
    one; every other character is one keystroke.  With ``enter_first`` the
    first line is started with Enter too (continuing after a typed line).
    """
    lines = list(lines)
    keystrokes: list[Keystroke] = []
    cur_row, cur_col = cursor

    def edit(label: str, start: tuple[int, int], end: tuple[int, int], new_text: str) -> None:
        nonlocal cur_row, cur_col
        (r0, c0), (r1, c1) = start, end
        assert r0 == r1, "edits stay on one line"
        head, tail = lines[r0][:c0], lines[r1][c1:]
        new = (head + new_text + tail).split("\n")
        lines[r0 : r1 + 1] = new
        cur_row = r0 + len(new) - 1
        cur_col = len(new[-1]) - len(tail)
        keystrokes.append(Keystroke(label, start, end, new_text, (cur_row, cur_col), list(lines)))

    for i, body_line in enumerate(text.split("\n")):
        if i > 0 or enter_first:
            current = lines[cur_row]
            auto = indent_of(current) + (INDENT_UNIT if current.rstrip().endswith(":") else 0)
            if not current.strip():
                auto = indent_of(current)
            edit("<enter>", (cur_row, cur_col), (cur_row, cur_col), "\n" + " " * auto)
        target = base + indent_of(body_line)
        while indent_of(lines[cur_row]) > target and not lines[cur_row].strip():
            col = cur_col
            edit("<bs>", (cur_row, col - INDENT_UNIT), (cur_row, col), "")
        while cur_col < target:
            edit("<tab>", (cur_row, cur_col), (cur_row, cur_col), " " * INDENT_UNIT)
        for ch in body_line.lstrip(" "):
            edit(ch, (cur_row, cur_col), (cur_row, cur_col), ch)
    return keystrokes


@dataclass
class Phase:
    """One stretch of typing, and what the user did just before it."""

    name: str
    doc: DataFile
    action: str  # open, switch, jump
    action_at: float  # seconds from the start of the scenario
    cursor: tuple[int, int]  # where the cursor is after the action
    lines: list[str]  # the document at the action
    keys: list[Keystroke]
    first_key_at: float
    timed: bool
    warmup: bool = False
    # Seconds each keystroke comes later than the fixed interval says: the
    # user's pauses at line ends so far (`--line-pause-ms`).
    delays: list[float] = field(default_factory=list)

    def key_at(self, i: int, interval: float) -> float:
        return self.first_key_at + i * interval + (self.delays[i] if i < len(self.delays) else 0.0)

    def end_at(self, interval: float) -> float:
        return self.key_at(len(self.keys) - 1, interval)

    def paused_before(self, i: int) -> bool:
        """Whether the user paused at the end of a line before keystroke ``i`` (an Enter)."""
        return 0 < i < len(self.delays) and self.delays[i] > self.delays[i - 1]


def line_pauses(keys: list[Keystroke], pause_s: float) -> list[float]:
    """Per keystroke, the pauses before it: ``pause_s`` before each Enter that starts a
    line after one the user wrote (not the phase's first keystroke), as a user
    pausing at the end of a line before going on."""
    delays, total = [], 0.0
    for i, key in enumerate(keys):
        if i > 0 and key.label == "<enter>" and pause_s > 0:
            total += pause_s
        delays.append(total)
    return delays


def build_plan(scenario: str, a: DataFile, b: DataFile, args) -> list[Phase]:
    """The phases of a scenario: times, documents and keystrokes (the same for both servers)."""
    iv = args.interval_ms / 1e3
    read, pause, settle = args.read_ms / 1e3, args.pause_ms / 1e3, args.settle_ms / 1e3
    line_pause = args.line_pause_ms / 1e3
    base = a.cursor[1]
    if scenario in ("open-type", "open-wait-type", "steady"):
        keys = type_text(a.lines, a.cursor, base, a.body)
        first = {"open-type": iv, "open-wait-type": read, "steady": STEADY_SETTLE_S}[scenario]
        name = f"type in {a.name}"
        return [Phase(name, a, "open", 0.0, a.cursor, a.lines, keys, first, True, warmup=scenario == "steady",
                      delays=line_pauses(keys, line_pause))]
    body_lines = a.body.split("\n")
    if scenario == "switch":
        if len(body_lines) < 2:
            raise SystemExit(f"switch: the body typed into {a.name} needs at least two lines")
        half = (len(body_lines) + 1) // 2
        k1 = type_text(a.lines, a.cursor, base, "\n".join(body_lines[:half]))
        p1 = Phase(f"type in {a.name} (warms it)", a, "open", 0.0, a.cursor, a.lines, k1, read, False, delays=line_pauses(k1, line_pause))
        t = p1.end_at(iv) + pause
        kb = type_text(b.lines, b.cursor, b.cursor[1], b.body.split("\n")[0][:B_CHARS])
        p2 = Phase(f"open {b.name}, type a little", b, "switch", t, b.cursor, b.lines, kb, t + settle, False)
        t = p2.end_at(iv) + pause
        k3 = type_text(k1[-1].lines, k1[-1].cursor, base, "\n".join(body_lines[half:]), enter_first=True)
        p3 = Phase(f"back in {a.name}, type", a, "switch", t, k1[-1].cursor, k1[-1].lines, k3, t + settle, True,
                   delays=line_pauses(k3, line_pause))
        return [p1, p2, p3]
    if scenario == "jump":
        if a.jump is None or not a.jump_body:
            raise SystemExit(f"jump: {a.name} has no `{JUMP_MARKER}` line or no {a.path.stem}_jump_body.txt")
        k1 = type_text(a.lines, a.cursor, base, a.body)
        p1 = Phase(f"type in {a.name} (warms it)", a, "open", 0.0, a.cursor, a.lines, k1, read, False, delays=line_pauses(k1, line_pause))
        shift = len(k1[-1].lines) - len(a.lines) if a.jump[0] > a.cursor[0] else 0
        jump = (a.jump[0] + shift, a.jump[1])
        assert not k1[-1].lines[jump[0]].strip(), "the jump site moved"
        t = p1.end_at(iv) + pause
        k2 = type_text(k1[-1].lines, jump, jump[1], a.jump_body)
        p2 = Phase(f"jump to line {jump[0] + 1}, type", a, "jump", t, jump, k1[-1].lines, k2, t + settle, True,
                   delays=line_pauses(k2, line_pause))
        return [p1, p2]
    raise SystemExit(f"unknown scenario {scenario}")


# ---------------------------------------------------------------------------
# Results


@dataclass
class Request:
    """A keystroke's completion request (or another request) and what became of it."""

    kind: str  # key; cria: reask, warmup; llama.vim: fim, spec, ring, warmup (HTTP requests)
    phase: int
    index: int  # keystroke index within the phase (-1: none)
    key_time: float  # monotonic: the keystroke this request answers (or when it was sent)
    sent: float | None = None
    answered: float | None = None
    # suggestion, empty; superseded (cria: answered empty after a newer request), not sent
    # (llama.vim: a newer keystroke came while it waited for a running request), error, unanswered
    outcome: str = "pending"
    text: str = ""
    prompt_tokens: int | None = None
    reused_tokens: int | None = None
    generated_tokens: int | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    server_latency_ms: float | None = None  # cria: lastLatencyMs
    stop: str | None = None
    local: bool = False  # answered without running the model (typed-through, client cache)
    pos: tuple[int, int] | None = None
    doc: str | None = None
    job: int | None = None  # llama.vim: index of the HTTP request that answered this keystroke
    extra_chunks: int | None = None  # llama.vim: chunks in input_extra
    key_ref: int | None = None  # llama.vim: the keystroke (index in Run.requests) an HTTP request answers
    hashes: list[str] | None = field(default=None, repr=False)  # llama.vim: its cache keys
    snapshot: list[str] | None = field(default=None, repr=False)  # llama.vim: the document when sent

    @property
    def latency_ms(self) -> float | None:
        return None if self.answered is None else (self.answered - self.key_time) * 1e3

    @property
    def is_answer(self) -> bool:
        return self.outcome in ("suggestion", "empty")

    def record(self, origin: float) -> dict:
        out = {k: v for k, v in vars(self).items() if k not in ("key_time", "sent", "answered", "hashes", "snapshot")}
        for k in ("key_time", "sent", "answered"):
            v = getattr(self, k)
            out[k + "_s"] = None if v is None else round(v - origin, 4)
        out["latency_ms"] = self.latency_ms
        return out


@dataclass
class Run:
    server: str  # cria, llama.cpp
    file: str
    scenario: str
    round: int
    phases: list[Phase]
    origin: float = 0.0
    action_t: list[float] = field(default_factory=list)
    first_key_t: list[float | None] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)  # per keystroke (+ cria's re-asks and warm-up)
    jobs: list[Request] = field(default_factory=list)  # llama.vim: every HTTP request
    shown: list[tuple[float, int, str, str]] = field(default_factory=list)  # (time, phase, text, how)
    statuses: list[tuple[float, dict]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def first_shown(self, pi: int) -> dict:
        """When the first suggestion was shown in phase ``pi``."""
        t0 = self.first_key_t[pi] if pi < len(self.first_key_t) else None
        if t0 is None:
            return {}
        times = [t for t, p, _, _ in self.shown if p == pi and t >= t0]
        if not times:
            # How long the user went without one: to the phase's last answer (or its end).
            ends = [r.answered for r in self.requests + self.jobs if r.phase == pi and r.answered is not None]
            ends += [r.key_time for r in self.requests if r.phase == pi]
            return {"none": True, "window_ms": (max(ends) - t0) * 1e3}
        t = min(times)
        typed = sum(1 for r in self.requests if r.kind == "key" and r.phase == pi and r.key_time <= t)
        return {"from_key_ms": (t - t0) * 1e3, "from_action_ms": (t - self.action_t[pi]) * 1e3, "typed": typed}

    def first_received(self, pi: int) -> float | None:
        """ms from the phase's first keystroke to the first non-empty answer received, shown or not
        (an answer for an older keystroke, which the editor drops, counts here)."""
        t0 = self.first_key_t[pi] if pi < len(self.first_key_t) else None
        if t0 is None:
            return None
        pool = self.jobs if self.jobs else self.requests
        times = [r.answered for r in pool if r.kind in ("key", "reask", "fim", "spec") and r.answered is not None
                 and r.answered >= t0 and r.text.strip() and r.outcome != "error"]
        return (min(times) - t0) * 1e3 if times else None


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value, digits=0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


# ---------------------------------------------------------------------------
# cria over LSP, driven like its editor plugins


class LspClient:
    """A minimal LSP client over a child process's stdio."""

    def __init__(self, argv: list[str], env: dict[str, str], stderr) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env)
        self.write_lock = threading.Lock()
        self.cond = threading.Condition()
        self.next_id = 1
        self.responses: dict[int, tuple[float, dict]] = {}
        self.statuses: list[tuple[float, dict]] = []
        self.messages: list[str] = []
        self.on_response = None  # callback(id, time, message), on the reader thread
        self.on_status = None  # callback(time, params), on the reader thread
        self.closed = False
        self.reader = threading.Thread(target=self._read, name="lsp-reader", daemon=True)
        self.reader.start()

    def _send(self, message: dict) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        frame = b"Content-Length: %d\r\n\r\n" % len(body) + body
        with self.write_lock:
            self.proc.stdin.write(frame)
            self.proc.stdin.flush()

    def notify(self, method: str, params) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def new_id(self) -> int:
        with self.cond:
            rid = self.next_id
            self.next_id += 1
            return rid

    def request(self, method: str, params) -> int:
        rid = self.new_id()
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return rid

    def wait(self, rid: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while rid not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise TimeoutError(f"no answer to request {rid} within {timeout:.0f} s")
                self.cond.wait(left)
            return self.responses[rid][1]

    def call(self, method: str, params, timeout: float = 60.0) -> dict:
        return self.wait(self.request(method, params), timeout)

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        if length is not None:
                            break
                        continue
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                message = json.loads(stream.read(length))
                self._dispatch(message, time.monotonic())
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _dispatch(self, message: dict, now: float) -> None:
        method = message.get("method")
        if method is not None and "id" in message:
            # A request from the server (progress tokens, anything else): null.
            self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            return
        if method is not None:
            params = message.get("params") or {}
            with self.cond:
                if method == "cria/status":
                    self.statuses.append((now, params))
                elif method in ("window/showMessage", "window/logMessage"):
                    self.messages.append(f"{method}: {params.get('message')}")
                self.cond.notify_all()
            if method == "cria/status" and self.on_status is not None:
                self.on_status(now, params)
            return
        rid = message.get("id")
        if self.on_response is not None:
            self.on_response(rid, now, message)
        with self.cond:
            self.responses[rid] = (now, message)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return predicate()
                self.cond.wait(min(left, 0.1))
            return True

    def close(self) -> int:
        try:
            self.call("shutdown", None, timeout=10)
            self.notify("exit", None)
        except (TimeoutError, BrokenPipeError, OSError):
            pass
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


LOG_FIELD = re.compile(r"(\w+)=(\"[^\"]*\"|\S+)")


def parse_cria_log(path: Path) -> list[dict]:
    """The `completion` lines of cria's log (CRIA_LOG=info), as dicts."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if " completion " not in line and not line.rstrip().endswith("completion"):
            continue
        fields = dict(LOG_FIELD.findall(line))
        if "latency_ms" in fields and "reused" in fields:
            rows.append(fields)
    return rows


def run_cria(args, run: Run, workdir: Path) -> None:
    log_path = workdir / "cria.log"
    env = dict(os.environ)
    env["CRIA_LOG"] = env.get("CRIA_LOG_BENCH", "info")
    with log_path.open("wb") as stderr:
        client = LspClient([args.cria, "lsp"], env, stderr)
        try:
            CriaDriver(args, client, run).play()
        finally:
            code = client.close()
    if code != 0:
        run.notes.append(f"cria exited with status {code}")
    rows = parse_cria_log(log_path)
    run.extra["log_rows"] = rows
    run.extra["log_path"] = str(log_path)
    for line in log_path.read_text(errors="replace").splitlines():
        if " ERROR " in line or " WARN " in line:
            run.notes.append("cria log: " + re.sub(r"^\S+\s+", "", line.strip())[:300])
        if " model ready " in line:
            run.extra["full_prompt_tokens"] = dict(LOG_FIELD.findall(line)).get("full_prompt_tokens")
        if " suggestion at rest " in line:
            stop = dict(LOG_FIELD.findall(line)).get("stop", "?").strip('"')
            at_rest = run.extra.setdefault("at_rest", {})
            at_rest[stop] = at_rest.get(stop, 0) + 1
    attach_cria_numbers(run)


class CriaDriver:
    """Plays a plan against `cria lsp` as cria's editor plugins do.

    After didOpen, after a switch and after a jump it sends `cria/prefetch`
    with the cursor; per keystroke an incremental didChange and an
    inlineCompletion request.  Re-ask rules: an inline request answered empty
    while the latest `cria/status` said `warming`, followed by a status
    `ready` before the next keystroke, is asked once more (same position);
    so is one answered with a suggestion (a block's first lines, maybe),
    followed before the next keystroke by a status whose `lateAnswer` names
    its document.
    """

    def __init__(self, args, client: LspClient, run: Run) -> None:
        self.args, self.client, self.run = args, client, run
        self.lock = threading.Lock()
        self.by_id: dict[int, Request] = {}
        self.newest: Request | None = None
        self.last_state: str | None = None
        self.reask_armed: Request | None = None
        self.reask_late: Request | None = None  # answered with a suggestion: re-asked on its `lateAnswer`
        self.opened: dict[str, int] = {}  # doc name -> version
        self.final_lines: dict[str, list[str]] = {}
        client.on_response = self.on_response
        client.on_status = self.on_status

    def uri(self, doc: DataFile) -> str:
        return (DATA / "replay" / doc.name).resolve().as_uri()

    # -- reader thread

    def on_response(self, rid, now, message) -> None:
        with self.lock:
            req = self.by_id.get(rid)
            if req is None:
                return
            req.answered = now
            if "error" in message:
                req.outcome = "error"
                req.text = json.dumps(message["error"])[:300]
                return
            result = message.get("result")
            items = result.get("items", []) if isinstance(result, dict) else (result or [])
            text = items[0].get("insertText", "") if items else ""
            req.text = text.get("value", "") if isinstance(text, dict) else text
            req.outcome = "suggestion" if items else "empty"
            if req.kind == "warmup" or req is not self.newest:
                return
            if req.text.strip():
                self.run.shown.append((now, req.phase, req.text, req.kind))
                self.reask_late = req
            elif self.last_state == "warming":
                self.reask_armed = req

    def on_status(self, now, params) -> None:
        with self.lock:
            self.last_state = params.get("state")
            armed = self.reask_armed
            if self.last_state == "ready" and armed is not None:
                self.reask_armed = None
                if armed is self.newest:
                    self._inline("reask", armed.phase, armed.index, armed.doc, armed.pos, now)
            late = self.reask_late
            late_uri = (params.get("lateAnswer") or {}).get("uri")
            if late is not None and late_uri == (DATA / "replay" / late.doc).resolve().as_uri():
                self.reask_late = None
                if late is self.newest:
                    self._inline("reask", late.phase, late.index, late.doc, late.pos, now)

    # -- requests (called with self.lock held)

    def _inline(self, kind: str, phase: int, index: int, doc: str, pos, now: float) -> Request:
        req = Request(kind, phase, index, now, sent=now, pos=pos, doc=doc)
        rid = self.client.new_id()
        self.by_id[rid] = req
        self.run.requests.append(req)
        if kind != "warmup":
            self.newest = req
        params = {
            "textDocument": {"uri": (DATA / "replay" / doc).resolve().as_uri()},
            "position": {"line": pos[0], "character": pos[1]},
            "context": {"triggerKind": 2},
        }
        self.client._send({"jsonrpc": "2.0", "id": rid, "method": "textDocument/inlineCompletion", "params": params})
        return req

    def prefetch(self, doc: DataFile, pos) -> None:
        self.client.notify(
            "cria/prefetch", {"textDocument": {"uri": self.uri(doc)}, "position": {"line": pos[0], "character": pos[1]}}
        )

    # -- the session

    def start(self) -> None:
        args, client, run = self.args, self.client, self.run
        steady = any(p.warmup for p in run.phases)
        # The steady state's warm-up completion runs under a long budget (a
        # cold prefill can take longer than the replay's budget on a busy
        # 2-core machine), set back with didChangeConfiguration before typing.
        options = {
            "model": args.model,
            "maxTokens": args.max_tokens,
            "latencyBudgetMs": max(args.budget_ms, WARMUP_BUDGET_MS) if steady else args.budget_ms,
            "promptTokens": args.prompt_tokens,
            "contextLength": args.context,
            "maxSuffixTokens": args.max_suffix_tokens,
        }
        capabilities = {
            "general": {"positionEncodings": ["utf-8"]},
            "window": {"workDoneProgress": False},
            "textDocument": {"synchronization": {"dynamicRegistration": False}, "inlineCompletion": {"dynamicRegistration": False}},
        }
        init = client.call(
            "initialize",
            {"processId": os.getpid(), "rootUri": None, "capabilities": capabilities, "initializationOptions": options},
        )
        encoding = init.get("result", {}).get("capabilities", {}).get("positionEncoding")
        if encoding != "utf-8":
            run.notes.append(f"cria negotiated position encoding {encoding!r} (the typed lines are ASCII, so columns agree)")
        client.notify("initialized", {})
        log("cria: loading the model ...")
        started = time.monotonic()
        ready = client.wait_for(
            lambda: any(s.get("state") in ("ready", "error") for _, s in client.statuses), timeout=args.load_timeout
        )
        states = [s for _, s in client.statuses if s.get("state") in ("ready", "error")]
        if not ready or states[-1].get("state") != "ready":
            detail = states[-1].get("message") if states else "no ready status"
            raise SystemExit(f"cria did not load {args.model}: {detail}; messages: {client.messages}")
        run.extra["load_s"] = time.monotonic() - started
        log(f"cria: model ready after {run.extra['load_s']:.1f} s")

    def warmup(self, pi: int, ph: Phase) -> None:
        """Steady state only: completions at the cursor until one ends within its (long) budget."""
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            with self.lock:
                warm = self._inline("warmup", pi, -1, ph.doc.name, ph.cursor, time.monotonic())
            if not self.client.wait_for(lambda: warm.answered is not None, WARMUP_BUDGET_MS / 1e3 + 30):
                raise SystemExit("cria did not answer the warm-up completion at all")
            log(f"cria: warm-up completion {tries} (cold prompt) took {warm.latency_ms:.0f} ms ({warm.outcome})")
            finished = warm.latency_ms < WARMUP_BUDGET_MS
            if finished or time.monotonic() - started > self.args.warmup_timeout:
                break
        self.run.extra["warmup_ms"] = (time.monotonic() - started) * 1e3
        self.run.extra["warmup_tries"] = tries
        if not finished:
            self.run.notes.append(f"the warm-up did not finish within {self.args.warmup_timeout:.0f} s")
        self.client.notify("workspace/didChangeConfiguration", {"settings": {"latencyBudgetMs": self.args.budget_ms}})

    def play(self) -> None:
        args, client, run = self.args, self.client, self.run
        self.start()
        iv = args.interval_ms / 1e3
        origin = run.origin = time.monotonic()
        for pi, ph in enumerate(run.phases):
            sleep_until(origin + ph.action_at)
            run.action_t.append(time.monotonic())
            run.first_key_t.append(None)
            with self.lock:
                self.reask_armed = self.reask_late = None
            doc = ph.doc
            if doc.name not in self.opened:
                self.opened[doc.name] = 1
                client.notify(
                    "textDocument/didOpen",
                    {"textDocument": {"uri": self.uri(doc), "languageId": "python", "version": 1, "text": "\n".join(ph.lines)}},
                )
            self.prefetch(doc, ph.cursor)
            log(f"cria: {ph.action} {doc.name} -> {ph.name} ({len(ph.keys)} keystrokes)")
            if ph.warmup:
                self.warmup(pi, ph)
                origin = time.monotonic() - ph.action_at  # keystrokes start STEADY_SETTLE_S after the warm-up
            for i, key in enumerate(ph.keys):
                sleep_until(origin + ph.key_at(i, iv))
                with self.lock:
                    self.reask_armed = self.reask_late = None
                    self.opened[doc.name] += 1
                    now = time.monotonic()
                    change = {
                        "range": {
                            "start": {"line": key.start[0], "character": key.start[1]},
                            "end": {"line": key.end[0], "character": key.end[1]},
                        },
                        "text": key.text,
                    }
                    client.notify(
                        "textDocument/didChange",
                        {"textDocument": {"uri": self.uri(doc), "version": self.opened[doc.name]}, "contentChanges": [change]},
                    )
                    self._inline("key", pi, i, doc.name, key.cursor, now)
                if i == 0:
                    run.first_key_t[pi] = now
            if ph.keys:
                self.final_lines[doc.name] = ph.keys[-1].lines
            else:
                self.final_lines.setdefault(doc.name, ph.lines)
        log("cria: typing done; waiting for the last answers")
        deadline = time.monotonic() + args.budget_ms / 1e3 + 30

        def settled():
            with self.lock:
                waiting = any(r.answered is None for r in run.requests)
                return not waiting and not (self.reask_armed is not None and self.last_state == "warming")

        while time.monotonic() < deadline and not settled():
            time.sleep(0.05)
        for r in run.requests:
            if r.answered is None:
                r.outcome = "unanswered"
        # Superseded: answered empty while a newer request had already been sent.
        live = sorted((r for r in run.requests if r.kind != "warmup"), key=lambda r: r.sent)
        for n, r in enumerate(live):
            if r.outcome == "empty" and any(o.sent < r.answered for o in live[n + 1 :]):
                r.outcome = "superseded"
        # The server's copy of each document must equal ours.
        for name, lines in self.final_lines.items():
            text = client.call("cria/documentText", {"uri": (DATA / "replay" / name).resolve().as_uri()}).get("result")
            if text != "\n".join(lines):
                run.notes.append(f"cria's copy of {name} differs from the editor's after the replay")
        run.statuses = list(client.statuses)
        run.notes.extend(client.messages)


def completion_statuses(statuses: list[tuple[float, dict]]) -> list[tuple[float, dict]]:
    """The `cria/status` notifications that report a new completion, with
    the times they came.

    A status is sent after every completion and on every state change; one
    sent on a state change may repeat the last completion's numbers, so a
    status counts only when its numbers differ from the previous one's.
    """
    out, last = [], None
    for t, s in statuses:
        if s.get("lastLatencyMs") is None:
            continue
        key = (s.get("lastLatencyMs"), s.get("promptTokens"), s.get("reusedTokens"), s.get("tokensPerSecond"))
        if key != last:
            out.append((t, s))
        last = key
    return out


# How far apart a completion's cria/status and its answer may arrive (the
# status is sent just before the answer; in replays 180 of 316 statuses came
# within 5 ms of an answer, the others spread evenly over 5-70 ms: those
# are generations that went on after their request was answered).
STATUS_PAIRING_S = 0.01


def attach_cria_numbers(run: Run) -> None:
    """Attach cria's per-completion numbers (cria/status, log) to requests.

    cria sends one cria/status after every completion that reached the
    engine, just before the answer; it carries no request id, so each answer
    is paired with the unclaimed status that came with it (within
    ``STATUS_PAIRING_S``) whose server-side latency best fits the latency
    measured here (never above it).  A request answered early (cancelled
    when the next keystroke came) has no status of its own: its generation
    went on and reported later, with a later answer.  The log lines of the
    same completions (same order) add the token count and stop reason.
    """
    statuses = completion_statuses(run.statuses)
    rows = run.extra.get("log_rows", [])
    joined = []
    j = 0
    for t, s in statuses:
        row = None
        for k in range(j, len(rows)):
            cand = rows[k]
            if cand.get("reused") == str(s.get("reusedTokens")) and cand.get("prompt") == str(s.get("promptTokens")):
                row, j = cand, k + 1
                break
        joined.append((t, s, row))
    used = [False] * len(joined)
    answered = sorted((r for r in run.requests if r.answered is not None), key=lambda r: r.answered)
    for req in answered:
        best = None
        lat = (req.answered - req.sent) * 1e3
        for k, (t, s, _) in enumerate(joined):
            if used[k] or abs(t - req.answered) > STATUS_PAIRING_S:
                continue
            gap = lat - s["lastLatencyMs"]
            if gap >= -2 and (best is None or gap < best[0]):
                best = (gap, k)
        if best is None or best[0] > 250:
            continue
        used[best[1]] = True
        _, s, row = joined[best[1]]
        req.prompt_tokens = s.get("promptTokens")
        req.reused_tokens = s.get("reusedTokens")
        req.server_latency_ms = s.get("lastLatencyMs")
        if row is not None:
            req.generated_tokens = int(row.get("generated", 0))
            req.stop = row.get("stop", "").strip('"') or None
            tps = s.get("tokensPerSecond")
            if tps and req.generated_tokens:
                req.decode_ms = req.generated_tokens / tps * 1e3
    for req in answered:
        if req.outcome == "suggestion" and req.server_latency_ms is None:
            req.local = True  # typed-through or the suggestion LRU: no cria/status
    run.extra["completions"] = len(statuses)
    stops: dict[str, int] = {}
    for row in rows:
        stop = row.get("stop", "?").strip('"')
        stops[stop] = stops.get(stop, 0) + 1
    run.extra["stops"] = stops
    # Which prompt each generation ran: the full one (its budget is the one
    # the server logged at `model ready`) or a quick one for a cold cursor.
    full = run.extra.get("full_prompt_tokens")
    if full is not None:
        answered_rows = [r for r in rows if r.get("stop", "").strip('"') != "cancelled" and "budget" in r]
        run.extra["prompts"] = (int(full), sum(r["budget"] == full for r in answered_rows), sum(r["budget"] != full for r in answered_rows))
    # What the new status fields said, if present.
    warming = [(t, s) for t, s in run.statuses if s.get("state") == "warming"]
    run.extra["warming_statuses"] = len(warming)
    kv = [s for _, s in run.statuses if s.get("kvCacheMb") is not None or s.get("kvSlots") is not None]
    if kv:
        run.extra["kv_cache_mb"] = kv[-1].get("kvCacheMb")
        run.extra["kv_slots"] = kv[-1].get("kvSlots")
        run.extra["kv_cache_mb_max"] = max((s.get("kvCacheMb") or 0) for s in kv)
    # Time spent warming per phase: from the first `warming` status after the
    # phase's action to the next `ready`.
    spans = []
    for pi, t_action in enumerate(run.action_t):
        t_end = run.action_t[pi + 1] if pi + 1 < len(run.action_t) else float("inf")
        w = [t for t, _ in warming if t_action <= t < t_end]
        if w:
            r = [t for t, s in run.statuses if s.get("state") == "ready" and t > w[0]]
            spans.append((pi, (w[0] - t_action) * 1e3, (r[0] - t_action) * 1e3 if r else None))
    run.extra["warming_spans"] = spans


# ---------------------------------------------------------------------------
# llama-server /infill, driven the way llama.vim drives it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(port: int, method: str, path: str, body=None, timeout: float = 30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else None)
    finally:
        conn.close()


class LlamaServer:
    def __init__(self, args, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "llama-server.log"
        help_text = subprocess.run([args.llama_server, "--help"], capture_output=True, text=True).stdout
        argv = [
            args.llama_server,
            "-m", args.gguf,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "-t", str(args.threads),
            "-c", str(args.context),
            "-np", "1",
        ]
        self.flags = []
        if "--cache-reuse" in help_text:
            argv += ["--cache-reuse", "256"]
            self.flags.append("--cache-reuse 256")
        if "--no-webui" in help_text:
            argv.append("--no-webui")
        self.argv = argv
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"llama-server exited with status {self.proc.returncode}; see {self.log_path}")
            try:
                status, _ = http_json(self.port, "GET", "/health", timeout=2)
                if status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"llama-server not healthy after {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


# llama.vim's defaults (ggml-org/llama.vim, autoload/llama.vim, 2026-01-31).
LLAMA_VIM = {
    "n_prefix": 256,
    "n_suffix": 64,
    "t_max_prompt_ms": 500,
    "t_max_predict_ms": 1000,
    "first_t_max_predict_ms": 250,  # the first request for a position; speculative ones get t_max_predict_ms
    "max_line_suffix": 8,
    "max_cache_keys": 250,
    "ring_n_chunks": 16,
    "ring_chunk_size": 64,
    "ring_scope": 1024,
    "ring_update_ms": 1000,
    "retry_ms": 100,  # while a request runs, a new one is retried this much later
    "buf_enter_pick_ms": 100,
}
SEP = "\u00ce"  # llama.vim's separator between prefix+middle and suffix in its cache keys
RESPONSE_FIELDS = [
    # llama.vim's ...
    "content", "timings/prompt_n", "timings/prompt_ms", "timings/prompt_per_token_ms", "timings/prompt_per_second",
    "timings/predicted_n", "timings/predicted_ms", "timings/predicted_per_token_ms", "timings/predicted_per_second",
    "truncated", "tokens_cached",
    # ... and what the report needs (the server computes them anyway)
    "timings/cache_n", "tokens_evaluated", "stop_type", "stopped_eos",
]
WS_LINE = re.compile(r"[ \t]*")
WORDS = re.compile(r"\W+", re.ASCII)


def getline(lines: list[str], a: int, b: int) -> list[str]:
    """Vim's getline(a, b): 1-based, inclusive, clipped; [] when a > b."""
    a = max(a, 1)
    b = min(b, len(lines))
    return lines[a - 1 : b] if a <= b else []


def line_at(lines: list[str], y: int) -> str:
    return lines[y - 1] if 1 <= y <= len(lines) else ""


def answer_field(answer: dict, *path: str):
    """A field of an /infill answer, nested or flattened by response_fields."""
    flat = answer.get("/".join(path))
    if flat is not None:
        return flat
    cur = answer
    for k in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(k)
    return cur


def chunk_sim(c0: list[str], c1: list[str]) -> float:
    """llama.vim's similarity of two chunks: shared words over all words."""
    t0 = [t for t in WORDS.split("\n".join(c0)) if t]
    t1 = [t for t in WORDS.split("\n".join(c1)) if t]
    if not t0 and not t1:
        return 1.0
    s0 = set(t0)
    common = sum(1 for t in t1 if t in s0)
    return 2.0 * common / (len(t0) + len(t1))


def render(lines: list[str], pos_x: int, pos_y: int, content_text: str) -> tuple[list[str], bool]:
    """llama.vim's fim_render: the lines it would show and whether they can be accepted."""
    content = content_text.split("\n")
    while content and content[-1] == "":
        content.pop()
    can_accept = True
    if not content:
        content, can_accept = [""], False
    line_cur = line_at(lines, pos_y)
    if WS_LINE.fullmatch(line_cur):
        lead = min(len(content[0]) - len(content[0].lstrip(" \t")), len(line_cur))
        line_cur, content[0] = content[0][:lead], content[0][lead:]
    prefix, suffix = line_cur[:pos_x], line_cur[pos_x:]
    if len(content) == 1 and content[0] == "":
        content = [""]
    if len(content) > 1 and content[0] == "" and content[1:] == getline(lines, pos_y + 1, pos_y + len(content) - 1):
        content = [""]
    if len(content) == 1 and content[0] == suffix:
        content = [""]
    cmp_y = pos_y + 1
    while cmp_y < len(lines) and WS_LINE.fullmatch(line_at(lines, cmp_y)):
        cmp_y += 1
    if prefix + content[0] == line_at(lines, cmp_y):
        if len(content) == 1:
            content = [""]
        if len(content) == 2 and content[-1] == line_at(lines, cmp_y + 1)[: len(content[-1])]:
            content = [""]
        if len(content) > 2 and content[1:] == getline(lines, cmp_y + 1, cmp_y + len(content) - 1):
            content = [""]
    content[-1] += suffix
    if not "\n".join(content).strip():
        can_accept = False
    return content, can_accept


@dataclass
class EditorDoc:
    name: str
    lines: list[str]
    cursor: tuple[int, int]  # 0-based (row, col)
    modified: bool = False


class Timer:
    __slots__ = ("t", "fn", "cancelled")

    def __init__(self, t: float, fn) -> None:
        self.t, self.fn, self.cancelled = t, fn, False


class LlamaVim:
    """llama.vim's FIM logic, replayed on one thread as Vim runs it.

    Mirrors llama.vim's autoload/llama.vim: `llama#fim` on every CursorMovedI
    (at most one request running; while one runs, a new one is retried 100 ms
    later for the cursor of that moment), the first request for a position
    with t_max_predict_ms 250, its result cache (250 keys; exact context, or
    up to 128 characters back when what was typed since starts the cached
    answer), a speculative request after every suggestion shown (the context
    as if it were accepted), the ring buffer of extra chunks (picked on
    BufEnter/BufLeave of unmodified buffers and around the cursor when it
    moved more than 32 lines, sent to the server once a second in normal
    mode as an `n_predict: 0` request that fills the KV cache, and passed as
    `input_extra` with every request), and the suggestion clean-up of
    fim_render (a suggestion that repeats the next line is not shown).
    """

    def __init__(self, args, port: int, run: Run, docs: dict[str, DataFile]) -> None:
        self.args, self.port, self.run = args, port, run
        self.cfg = dict(LLAMA_VIM, n_prefix=args.n_prefix, n_suffix=args.n_suffix,
                        t_max_prompt_ms=args.t_max_prompt_ms, t_max_predict_ms=args.t_max_predict_ms,
                        ring_n_chunks=args.ring_n_chunks)
        self.rng = random.Random(args.seed)
        self.heap: list[tuple[float, int, Timer]] = []
        self.seq = 0
        self.inbox: queue.Queue = queue.Queue()
        self.docs = {name: EditorDoc(name, list(d.lines), d.cursor) for name, d in docs.items()}
        self.active: EditorDoc | None = None
        self.mode = "n"
        self.phase = 0
        self.t_last_move = time.monotonic()
        # llama.vim's script-local state
        self.ring_chunks: list[dict] = []
        self.ring_queued: list[dict] = []
        self.ring_n_evict = 0
        self.cache: OrderedDict[str, str] = OrderedDict()
        self.hint_shown = False
        self.fim_data: dict = {}
        self.pos_y_pick = -9999
        self.indent_last = -1
        self.timer_fim: Timer | None = None
        self.current_job: Request | None = None
        self.last_key: Request | None = None
        self.conns: list[http.client.HTTPConnection] = []
        self.plan_done = False

    # -- the event loop

    def at(self, t: float, fn) -> Timer:
        timer = Timer(t, fn)
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, timer))
        return timer

    def after(self, seconds: float, fn) -> Timer:
        return self.at(time.monotonic() + seconds, fn)

    def loop(self, done, deadline: float) -> None:
        while time.monotonic() < deadline and not done():
            wait = 0.05
            if self.heap:
                wait = max(0.0, min(wait, self.heap[0][0] - time.monotonic()))
            try:
                self.inbox.get(timeout=wait)()
                continue
            except queue.Empty:
                pass
            while self.heap and self.heap[0][0] <= time.monotonic():
                _, _, timer = heapq.heappop(self.heap)
                if not timer.cancelled:
                    timer.cancelled = True
                    timer.fn()

    # -- HTTP jobs (curl in llama.vim)

    def start_job(self, kind: str, body: dict, timeout: float | None = None) -> Request:
        now = time.monotonic()
        job = Request(kind, self.phase, -1, now, sent=now, extra_chunks=len(body.get("input_extra", [])))
        self.run.jobs.append(job)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or self.args.budget_ms / 1e3 + 60)
        self.conns.append(conn)

        def fetch():
            status, data, error = None, b"", None
            try:
                conn.request("POST", "/infill", body=json.dumps(body), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                status, data = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as e:
                error = e
            finally:
                conn.close()
            now = time.monotonic()
            self.inbox.put(lambda: self.job_done(job, status, data, error, now))

        threading.Thread(target=fetch, daemon=True).start()
        return job

    def job_done(self, job: Request, status, data: bytes, error, now: float) -> None:
        job.answered = now
        answer = None
        if error is not None:
            job.outcome, job.text = "error", f"{type(error).__name__}: {error}"
        elif status != 200:
            job.outcome, job.text = "error", data.decode(errors="replace")[:300]
        else:
            try:
                answer = json.loads(data)
            except ValueError:
                job.outcome, job.text = "error", data.decode(errors="replace")[:300]
        if answer is not None:
            job.text = answer.get("content", "") or ""
            job.reused_tokens = answer_field(answer, "timings", "cache_n")
            job.prompt_tokens = answer_field(answer, "tokens_evaluated")
            if job.prompt_tokens is None and job.reused_tokens is not None:
                job.prompt_tokens = job.reused_tokens + (answer_field(answer, "timings", "prompt_n") or 0)
            job.generated_tokens = answer_field(answer, "timings", "predicted_n")
            job.prefill_ms = answer_field(answer, "timings", "prompt_ms")
            job.decode_ms = answer_field(answer, "timings", "predicted_ms")
            job.stop = answer_field(answer, "stop_type") or ("eos" if answer_field(answer, "stopped_eos") else None)
            job.outcome = "empty"
        if job.kind not in ("fim", "spec"):
            return
        if answer is not None:
            _, can_accept = render(job.snapshot, job.pos[1], job.pos[0] + 1, job.text)
            job.outcome = "suggestion" if can_accept else "empty"
            for h in job.hashes:  # s:fim_on_response: cache the answer under every hash
                self.cache_insert(h, job.text)
        key = self.run.requests[job.key_ref] if job.key_ref is not None else None
        if key is not None and key.answered is None:
            for k in ("answered", "outcome", "text", "prompt_tokens", "reused_tokens", "generated_tokens",
                      "prefill_ms", "decode_ms", "stop", "extra_chunks"):
                setattr(key, k, getattr(job, k))
        if answer is not None and (not self.hint_shown or not self.fim_data.get("can_accept")):
            self.try_hint(*self.cursor_xy(), how="response")
        self.current_job = None  # s:fim_on_exit

    # -- llama.vim

    def cursor_xy(self) -> tuple[int, int]:
        row, col = self.active.cursor
        return col, row + 1

    def cache_insert(self, key: str, value: str) -> None:
        if key in self.cache:
            self.cache.move_to_end(key)
        elif len(self.cache) > self.cfg["max_cache_keys"] - 1:
            self.cache.popitem(last=False)
        self.cache[key] = value

    def cache_get(self, key: str) -> str | None:
        if key not in self.cache:
            return None
        self.cache.move_to_end(key)
        return self.cache[key]

    def ctx_local(self, pos_x: int, pos_y: int, prev: list[str]) -> dict:
        lines, cfg = self.active.lines, self.cfg
        n = len(lines)
        if not prev:
            line_cur = line_at(lines, pos_y)
            lp, ls = line_cur[:pos_x], line_cur[pos_x:]
            lines_prefix = getline(lines, max(1, pos_y - cfg["n_prefix"]), pos_y - 1)
            lines_suffix = getline(lines, pos_y + 1, min(n, pos_y + cfg["n_suffix"]))
            if WS_LINE.fullmatch(line_cur):
                indent, lp, ls = 0, "", ""
            else:
                indent = len(line_cur) - len(line_cur.lstrip(" \t"))
        else:
            line_cur = line_at(lines, pos_y) + prev[0] if len(prev) == 1 else prev[-1]
            lp, ls = line_cur, ""
            lines_prefix = getline(lines, max(1, pos_y - cfg["n_prefix"] + len(prev) - 1), pos_y - 1)
            if len(prev) > 1:
                lines_prefix.append(line_at(lines, pos_y) + prev[0])
                lines_prefix.extend(prev[1:-1])
            lines_suffix = getline(lines, pos_y + 1, min(n, pos_y + cfg["n_suffix"]))
            indent = self.indent_last
        return {
            "prefix": "\n".join(lines_prefix) + "\n",
            "middle": lp,
            "suffix": ls + "\n" + "\n".join(lines_suffix) + "\n",
            "indent": indent,
            "line_cur_suffix": ls,
        }

    def around_cursor(self) -> list[str]:
        row = self.active.cursor[0] + 1
        half = self.cfg["ring_chunk_size"] // 2
        return getline(self.active.lines, max(1, row - half), min(row + half, len(self.active.lines)))

    def pick_chunk(self, text: list[str], no_mod: bool, do_evict: bool) -> None:
        cfg = self.cfg
        if no_mod and self.active.modified:  # the buffers here are all files on disk, listed
            return
        if cfg["ring_n_chunks"] <= 0 or len(text) < 3:
            return
        size = cfg["ring_chunk_size"]
        if len(text) + 1 < size:
            chunk = list(text)
        else:
            l0 = self.rng.randint(0, max(0, len(text) - size // 2))
            l1 = min(l0 + size // 2, len(text))
            chunk = text[l0 : l1 + 1]
        if any(c["data"] == chunk for c in self.ring_chunks + self.ring_queued):
            return
        for pool in (self.ring_queued, self.ring_chunks):
            for i in range(len(pool) - 1, -1, -1):
                if chunk_sim(pool[i]["data"], chunk) > 0.9:
                    if not do_evict:
                        return
                    del pool[i]
                    self.ring_n_evict += 1
        if len(self.ring_queued) == 16:
            del self.ring_queued[0]
        self.ring_queued.append({"data": chunk, "str": "\n".join(chunk) + "\n", "filename": self.active.name})

    def ring_extra(self) -> list[dict]:
        return [{"text": c["str"], "filename": c["filename"]} for c in self.ring_chunks]

    def ring_update(self) -> None:
        self.after(self.cfg["ring_update_ms"] / 1e3, self.ring_update)
        if self.mode != "n" and time.monotonic() - self.t_last_move < 3.0:
            return
        if not self.ring_queued:
            return
        if len(self.ring_chunks) == self.cfg["ring_n_chunks"]:
            del self.ring_chunks[0]
        self.ring_chunks.append(self.ring_queued.pop(0))
        body = {
            "id_slot": 0, "input_prefix": "", "input_suffix": "", "input_extra": self.ring_extra(), "prompt": "",
            "n_predict": 0, "temperature": 0.0, "samplers": [], "stream": False, "cache_prompt": True,
            "t_max_prompt_ms": 1, "t_max_predict_ms": 1, "response_fields": [""],
        }
        self.start_job("ring", body)

    def fim(self, pos_x: int, pos_y: int, is_auto: bool, prev: list[str], use_cache: bool) -> None:
        """llama#fim."""
        cfg = self.cfg
        x = pos_x if pos_x >= 0 else self.cursor_xy()[0]
        y = pos_y if pos_y >= 0 else self.cursor_xy()[1]
        if self.current_job is not None:
            if self.timer_fim is not None:
                self.timer_fim.cancelled = True
            self.timer_fim = self.after(cfg["retry_ms"] / 1e3, lambda: self.fim(pos_x, pos_y, True, prev, use_cache))
            return
        ctx = self.ctx_local(x, y, prev)
        if is_auto and len(ctx["line_cur_suffix"]) > cfg["max_line_suffix"]:
            return
        t_max_predict_ms = cfg["t_max_predict_ms"] if prev else cfg["first_t_max_predict_ms"]
        hashes = [ctx["prefix"] + ctx["middle"] + SEP + ctx["suffix"]]
        trimmed = ctx["prefix"]
        for _ in range(3):
            trimmed = re.sub(r"^[^\n]*\n", "", trimmed, count=1)
            if not trimmed:
                break
            hashes.append(trimmed + ctx["middle"] + SEP + ctx["suffix"])
        # The keystroke this request answers: the last one, if the cursor is still where it left it
        # (a retry can fire after a switch or jump), and none for speculative requests.
        last = self.last_key
        key = last if (not prev and last is not None and last.answered is None and last.job is None
                       and last.doc == self.active.name and last.pos == self.active.cursor) else None
        if use_cache and self.args.llama_vim_cache:
            if any(self.cache_get(h) is not None for h in hashes):
                if key is not None:  # cached under a trimmed context: nothing to send, nothing shown
                    key.answered, key.outcome, key.local, key.stop = time.monotonic(), "empty", True, "client cache"
                return
        self.indent_last = ctx["indent"]
        text = self.around_cursor()
        half = cfg["ring_chunk_size"] // 2
        l0 = self.rng.randint(0, max(0, len(text) - half))
        chunk = text[l0 : min(l0 + half, len(text)) + 1]
        for i in range(len(self.ring_chunks) - 1, -1, -1):
            if chunk_sim(self.ring_chunks[i]["data"], chunk) > 0.5:
                del self.ring_chunks[i]
                self.ring_n_evict += 1
        body = {
            "id_slot": 0,
            "input_prefix": ctx["prefix"],
            "input_suffix": ctx["suffix"],
            "input_extra": self.ring_extra(),
            "prompt": ctx["middle"],
            "n_predict": self.args.max_tokens,
            "stop": [],
            "n_indent": ctx["indent"],
            "top_k": 40,
            "top_p": 0.90,
            "samplers": ["top_k", "top_p", "infill"],
            "stream": False,
            "cache_prompt": True,
            "t_max_prompt_ms": cfg["t_max_prompt_ms"],
            "t_max_predict_ms": t_max_predict_ms,
            "response_fields": RESPONSE_FIELDS,
        }
        job = self.start_job("spec" if prev else "fim", body)
        job.hashes, job.snapshot, job.pos, job.doc = hashes, self.active.lines, (y - 1, x), self.active.name
        if key is not None:
            job.index, job.key_ref, job.phase = key.index, key.key_ref, key.phase
            key.job = len(self.run.jobs) - 1
            key.sent = job.sent
        self.current_job = job
        delta_y = abs(y - self.pos_y_pick)
        if is_auto and delta_y > 32:
            lines, n = self.active.lines, len(self.active.lines)
            self.pick_chunk(getline(lines, max(1, y - cfg["ring_scope"]), max(1, y - cfg["n_prefix"])), False, False)
            self.pick_chunk(
                getline(lines, min(n, y + cfg["n_suffix"]), min(n, y + cfg["n_suffix"] + cfg["ring_chunk_size"])),
                False, False,
            )
            self.pos_y_pick = y

    def try_hint(self, pos_x: int, pos_y: int, how: str) -> tuple[bool, bool]:
        """s:fim_try_hint: show a cached suggestion for the cursor. Returns (found, can_accept)."""
        if self.mode != "i":
            return False, False
        ctx = self.ctx_local(pos_x, pos_y, [])
        raw = self.cache_get(ctx["prefix"] + ctx["middle"] + SEP + ctx["suffix"])
        if raw is None and self.args.llama_vim_cache:
            pm = ctx["prefix"] + ctx["middle"]
            best = 0
            for i in range(min(128, len(pm))):
                removed = pm[-(1 + i) :]
                cached = self.cache_get(pm[: -(1 + i)] + SEP + ctx["suffix"])
                if cached is None or cached[: i + 1] != removed:
                    continue
                rest = cached[i + 1 :]
                if rest:
                    if raw is None:
                        raw = rest
                    elif len(rest) > best:
                        best, raw = len(rest), rest
        if raw is None:
            return False, False
        content, can_accept = render(self.active.lines, pos_x, pos_y, raw)
        self.hint_shown = True
        self.fim_data = {"pos_x": pos_x, "pos_y": pos_y, "content": content, "can_accept": can_accept}
        if can_accept:
            self.run.shown.append((time.monotonic(), self.phase, "\n".join(content), how))
        self.fim(pos_x, pos_y, True, content, True)  # the speculative request
        return True, can_accept

    def hide(self) -> None:
        self.hint_shown = False

    def on_move(self) -> tuple[bool, bool]:
        self.t_last_move = time.monotonic()
        self.hide()
        if not self.args.llama_vim_cache:
            return False, False
        return self.try_hint(*self.cursor_xy(), how="cache")

    # -- what the user does

    def buf_enter(self) -> None:
        self.after(self.cfg["buf_enter_pick_ms"] / 1e3, lambda: self.pick_chunk(self.around_cursor(), True, True))

    def on_action(self, pi: int, ph: Phase) -> None:
        self.run.action_t.append(time.monotonic())
        self.run.first_key_t.append(None)
        self.phase = pi
        if self.mode == "i":  # <Esc>
            self.hide()
            self.mode = "n"
        doc = self.docs[ph.doc.name]
        if ph.action in ("open", "switch"):
            if self.active is not None and self.active is not doc:
                self.pick_chunk(self.around_cursor(), True, True)  # BufLeave
            self.active = doc
            doc.cursor = ph.cursor
            self.buf_enter()
        else:  # jump: the cursor moves in normal mode
            doc.cursor = ph.cursor
        self.on_move()
        log(f"llama.vim: {ph.action} {doc.name} -> {ph.name} ({len(ph.keys)} keystrokes)")

    def on_key(self, pi: int, i: int, key: Keystroke, last: bool) -> None:
        now = time.monotonic()
        if i == 0:
            self.mode = "i"
            self.run.first_key_t[pi] = now
        doc = self.active
        doc.lines, doc.cursor, doc.modified = key.lines, key.cursor, True
        rec = Request("key", pi, i, now, pos=key.cursor, doc=doc.name)
        rec.key_ref = len(self.run.requests)
        self.run.requests.append(rec)
        self.last_key = rec
        # CursorMovedI: s:on_move, then llama#fim
        found, can_accept = self.on_move()
        if found and can_accept:
            rec.answered, rec.outcome, rec.local, rec.stop = time.monotonic(), "suggestion", True, "client cache"
        self.fim(-1, -1, True, [], True)
        if last:
            self.plan_done = True

    def warmup(self, ph: Phase) -> None:
        """Steady state only: one /infill at the cursor, waited for, before the replay."""
        self.active = self.docs[ph.doc.name]
        ctx = self.ctx_local(ph.cursor[1], ph.cursor[0] + 1, [])
        self.indent_last = ctx["indent"]  # as llama#fim sets it (else a speculative request sends n_indent -1)
        body = {
            "id_slot": 0, "input_prefix": ctx["prefix"], "input_suffix": ctx["suffix"], "input_extra": [],
            "prompt": ctx["middle"], "n_predict": self.args.max_tokens, "stop": [], "n_indent": ctx["indent"],
            "top_k": 40, "top_p": 0.90, "samplers": ["top_k", "top_p", "infill"], "stream": False,
            "cache_prompt": True, "t_max_prompt_ms": self.cfg["t_max_prompt_ms"],
            "t_max_predict_ms": self.args.budget_ms, "response_fields": RESPONSE_FIELDS,
        }
        started = time.monotonic()
        try:
            status, answer = http_json(self.port, "POST", "/infill", body, timeout=self.args.warmup_timeout)
        except OSError as e:
            status, answer = None, {"error": str(e)}
        self.run.extra["warmup_ms"] = (time.monotonic() - started) * 1e3
        if status != 200:
            self.run.notes.append(f"the warm-up failed ({status}: {answer}); the replay starts with a cold cache")
        else:
            self.cache_insert(ctx["prefix"] + ctx["middle"] + SEP + ctx["suffix"], answer.get("content", ""))
        log(f"llama-server: warm-up completion (cold prompt) took {self.run.extra['warmup_ms']:.0f} ms")

    def play(self) -> None:
        run, iv = self.run, self.args.interval_ms / 1e3
        if run.phases[0].warmup:
            self.warmup(run.phases[0])
            self.active = None
        origin = run.origin = time.monotonic()
        self.t_last_move = origin
        if self.cfg["ring_n_chunks"] > 0:
            self.after(self.cfg["ring_update_ms"] / 1e3, self.ring_update)
        last_phase = len(run.phases) - 1
        for pi, ph in enumerate(run.phases):
            self.at(origin + ph.action_at, lambda pi=pi, ph=ph: self.on_action(pi, ph))
            for i, key in enumerate(ph.keys):
                last = pi == last_phase and i == len(ph.keys) - 1
                self.at(origin + ph.key_at(i, iv), lambda pi=pi, i=i, key=key, last=last: self.on_key(pi, i, key, last))
        end = origin + run.phases[-1].end_at(iv)

        def done():
            return self.plan_done and self.current_job is None and (self.timer_fim is None or self.timer_fim.cancelled)

        self.loop(done, end + self.args.budget_ms / 1e3 + 60)
        for r in run.requests:
            if r.outcome == "pending":
                r.outcome = "not sent" if r.job is None else "unanswered"
        for j in run.jobs:
            if j.outcome == "pending":
                j.outcome = "unanswered"
        for conn in self.conns:  # ring requests still running
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        run.extra["ring"] = {"chunks": len(self.ring_chunks), "queued": len(self.ring_queued), "evicted": self.ring_n_evict}


def run_llama(args, run: Run, workdir: Path, docs: dict[str, DataFile]) -> None:
    server = LlamaServer(args, workdir)
    try:
        log(f"llama-server: starting on port {server.port} ({' '.join(server.flags) or 'no --cache-reuse'})")
        run.extra["load_s"] = server.wait_healthy(args.load_timeout)
        log(f"llama-server: healthy after {run.extra['load_s']:.1f} s")
        a = run.phases[0].doc
        _, tok = http_json(server.port, "POST", "/tokenize", {"content": "\n".join(a.lines)})
        run.extra["source_tokens"] = len(tok.get("tokens", [])) if tok else None
        LlamaVim(args, server.port, run, docs).play()
    finally:
        server.stop()
    text = server.log_path.read_text(errors="replace")
    for line in text.splitlines():
        if re.match(r"^\S+ E ", line):  # llama.cpp's log level E: errors
            run.notes.append("llama-server log: " + line.strip()[:300])
    kv = re.findall(r"llama_kv_cache[^\n]*?size\s*=\s*([\d.]+)\s*MiB", text)
    if kv:
        run.extra["kv_cache_mb"] = float(kv[0])
    run.extra["log_path"] = str(server.log_path)


# ---------------------------------------------------------------------------
# Report


def rest_of_line_typed(phase: Phase, index: int) -> str | None:
    """What the user goes on to type on the cursor's line after keystroke ``index``
    of ``phase``, or None when that line's start is changed later (a dedent)."""
    key, final = phase.keys[index], phase.keys[-1].lines
    row, col = key.cursor
    if row >= len(final) or final[row][:col] != key.lines[row][:col]:
        return None
    return final[row][col:]


def right_at_keys(keys: list[Request], phase: Phase) -> tuple[int, int, list[int]]:
    """Over the keystrokes (of ``phase``) shown a suggestion: how many showed exactly the rest of
    the line the user then typed (its first line), how many could be judged, and
    the characters each got right (the first line's longest prefix that is what
    was typed next): what a suggestion was worth, not only how fast it came."""
    exact, judged, right = 0, 0, []
    for r in keys:
        if r.outcome != "suggestion" or not (0 <= r.index < len(phase.keys)):
            continue
        rest = rest_of_line_typed(phase, r.index)
        if not rest:
            continue
        first = r.text.split("\n")[0]
        judged += 1
        exact += first == rest
        right.append(len(os.path.commonprefix([first, rest])))
    return exact, judged, right


def summarise(reqs: list[Request], phase: Phase) -> dict:
    keys = [r for r in reqs if r.kind == "key"]
    exact, judged, right = right_at_keys(keys, phase)
    answered = [r for r in keys if r.is_answer]
    lat = [r.latency_ms for r in answered]
    with_numbers = [r for r in answered if r.reused_tokens is not None and r.prompt_tokens is not None]
    last = keys[-1] if keys else None
    after_pause = [r for r in keys if 0 <= r.index < len(phase.keys) and phase.paused_before(r.index)]
    return {
        "after_pause": len(after_pause),
        "after_pause_shown": sum(r.outcome == "suggestion" for r in after_pause),
        "after_pause_p50": percentile([r.latency_ms for r in after_pause if r.outcome == "suggestion"], 50),
        "keys": len(keys),
        "p50": percentile(lat, 50),
        "p95": percentile(lat, 95),
        "max": max(lat) if lat else None,
        "last": last.latency_ms if last and last.is_answer else None,
        "suggestion": sum(r.outcome == "suggestion" for r in keys),
        "local": sum(r.local and r.outcome == "suggestion" for r in keys),
        "empty": sum(r.outcome == "empty" for r in keys),
        "superseded": sum(r.outcome in ("superseded", "not sent") for r in keys),
        "errors": sum(r.outcome in ("error", "unanswered") for r in keys),
        "model_p50": percentile([r.latency_ms for r in answered if not r.local and r.outcome == "suggestion"], 50),
        "computed": mean([r.prompt_tokens - r.reused_tokens for r in with_numbers]),
        "prompt": mean([r.prompt_tokens for r in with_numbers]),
        "decode_ms": median([r.decode_ms for r in answered if r.decode_ms is not None]),
        "answered": len(answered),
        "numbers_for": len(with_numbers),
        "exact_rest": f"{exact} of {judged}" if judged else None,
        "right_chars": f"{mean(right):.1f}" if right else None,
    }


def timed_phase(phases: list[Phase]) -> int:
    return next(i for i, p in enumerate(phases) if p.timed)


def first_shown_pooled(runs: list[Run], pi: int) -> dict:
    """First-suggestion times over rounds: medians, and whether some round showed none."""
    got = [r.first_shown(pi) for r in runs]
    ok = [g for g in got if "from_key_ms" in g]
    received = [r.first_received(pi) for r in runs]
    return {
        "received_ms": median([x for x in received if x is not None]),
        "from_key_ms": median([g["from_key_ms"] for g in ok]),
        "from_action_ms": median([g["from_action_ms"] for g in ok]),
        "typed": median([g["typed"] for g in ok]),
        "all": [g.get("from_key_ms") for g in got],
        "none": len(got) - len(ok),
        "window_ms": min((g["window_ms"] for g in got if "window_ms" in g), default=None),
    }


def ratio(a, b) -> str:
    if not a or b is None:
        return "—"
    r = b / a
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


ACTION_WORDS = {"open": "didOpen", "switch": "the switch", "jump": "the jump"}


def print_table(file: str, scenario: str, cria_runs: list[Run], llama_runs: list[Run], args) -> dict:
    runs = cria_runs or llama_runs
    phases = runs[0].phases
    pi = timed_phase(phases)
    ph = phases[pi]
    iv = args.interval_ms
    c_first = first_shown_pooled(cria_runs, pi) if cria_runs else {}
    l_first = first_shown_pooled(llama_runs, pi) if llama_runs else {}
    sc = summarise([r for run in cria_runs for r in run.requests if r.phase == pi], ph)
    sl = summarise([r for run in llama_runs for r in run.requests if r.phase == pi], ph)
    c_reask = sum(r.kind == "reask" and r.phase == pi for run in cria_runs for r in run.requests)
    l_spec = sum(j.kind == "spec" and j.phase == pi for run in llama_runs for j in run.jobs)
    l_ring = sum(j.kind == "ring" and j.phase == pi for run in llama_runs for j in run.jobs)

    jump = abs(ph.cursor[0] - phases[0].keys[-1].cursor[0]) if scenario == "jump" else ""
    title = SCENARIOS[scenario].format(read=f"{args.read_ms / 1e3:g}", jump=jump)
    print()
    print(f"### {file}: `{scenario}`{' (steady state)' if scenario == 'steady' else ''}")
    print()
    print(
        f"{title[0].upper() + title[1:]}. Timed phase: \"{ph.name}\", {len(ph.keys)} keystrokes every {iv} ms, "
        f"timed {TIMED_PHASE[scenario]}{'' if scenario == 'steady' else '; no untimed warm-up'}."
    )
    print()

    def none_note(first: dict) -> str:
        return f" ({first['none']} round(s) showed none)" if first.get("none") else ""

    def none_text(first: dict) -> str:
        return f"none in {first['window_ms'] / 1e3:.1f} s" if first.get("window_ms") is not None else "none"

    rows = [
        ("first suggestion shown, ms after the phase's first keystroke", c_first.get("from_key_ms"), l_first.get("from_key_ms"), True),
        (f"… ms after {ACTION_WORDS[ph.action]}", c_first.get("from_action_ms"), l_first.get("from_action_ms"), True),
        ("keystrokes typed until then", c_first.get("typed"), l_first.get("typed"), False),
        ("first non-empty answer received, shown or not (ms after the first keystroke)",
         c_first.get("received_ms"), l_first.get("received_ms"), True),
        ("latency p50 of answered keystrokes (ms)", sc["p50"], sl["p50"], True),
        ("latency p95 of answered keystrokes (ms)", sc["p95"], sl["p95"], True),
        ("latency max of answered keystrokes (ms)", sc["max"], sl["max"], True),
        ("latency of the last keystroke (ms)", sc["last"], sl["last"], True),
        ("latency p50 of suggestions from a model run (ms)", sc["model_p50"], sl["model_p50"], True),
        ("keystrokes answered with a suggestion", sc["suggestion"], sl["suggestion"], False),
        ("… of which without a model run (typed-through / client cache)", sc["local"], sl["local"], False),
        ("… of which the rest of the line exactly (first line; keystrokes where the line's rest is known)", sc["exact_rest"], sl["exact_rest"], False),
        ("characters right per suggestion shown (mean: its first line's prefix that was typed next)", sc["right_chars"], sl["right_chars"], False),
        ("keystrokes answered empty", sc["empty"], sl["empty"], False),
        ("Enter after a pause at a line's end (`--line-pause-ms`): answered with a suggestion, of all",
         f"{sc['after_pause_shown']} of {sc['after_pause']}" if sc["after_pause"] else None,
         f"{sl['after_pause_shown']} of {sl['after_pause']}" if sl["after_pause"] else None, False),
        ("… their latency p50 (ms)", sc["after_pause_p50"], sl["after_pause_p50"], True),
        ("keystrokes superseded (cria: answered empty after a newer one; llama.vim: never sent, a request was running)",
         sc["superseded"], sl["superseded"], False),
        ("errors or unanswered", sc["errors"], sl["errors"], False),
        ("other requests: re-asks (cria) / speculative + extra-context (llama.vim)", c_reask if cria_runs else None,
         f"{l_spec} + {l_ring}" if llama_runs else None, False),
        ("prompt tokens computed per answered keystroke (mean)", sc["computed"], sl["computed"], False),
        ("decode time per answered keystroke (median ms)", sc["decode_ms"], sl["decode_ms"], True),
    ]
    print("| measure | cria | llama.cpp | llama.cpp / cria |")
    print("| --- | ---: | ---: | ---: |")
    for label, c, l, with_ratio in rows:
        c = c if cria_runs else None
        l = l if llama_runs else None
        cs = c if isinstance(c, str) else fmt(c)
        ls = l if isinstance(l, str) else fmt(l)
        if label.startswith("first suggestion"):
            cs += none_note(c_first)
            ls += none_note(l_first)
            if c is None and c_first.get("none"):
                cs = none_text(c_first)
            if l is None and l_first.get("none"):
                ls = none_text(l_first)
        print(f"| {label} | {cs} | {ls} | {ratio(c, l) if with_ratio else ''} |")
    print()

    # Under the table
    if args.rounds > 1:
        print(f"- first suggestion per round (ms after the first keystroke): cria {c_first.get('all')}, llama.cpp {l_first.get('all')}.")
    for other, p in enumerate(phases):
        if other == pi:
            continue
        c = first_shown_pooled(cria_runs, other) if cria_runs else {}
        l = first_shown_pooled(llama_runs, other) if llama_runs else {}
        def said(first: dict) -> str:
            if first.get("from_key_ms") is not None:
                return f"{fmt(first['from_key_ms'])} ms"
            return none_text(first) if first.get("none") else "—"

        print(
            f"- untimed phase \"{p.name}\" ({len(p.keys)} keystrokes, {ACTION_WORDS[p.action]} then the first keystroke "
            f"{(p.first_key_at - p.action_at) * 1e3:.0f} ms later): first suggestion {said(c)} (cria) / "
            f"{said(l)} (llama.cpp) after its first keystroke."
        )
    if cria_runs:
        e = cria_runs[-1].extra
        parts = [f"model loaded in {fmt(median([r.extra.get('load_s', 0) for r in cria_runs]), 1)} s (not timed)"]
        if scenario == "steady":
            parts.append(f"warm-up {fmt(e.get('warmup_ms'))} ms in {e.get('warmup_tries', 0)} request(s)")
        if e.get("kv_cache_mb") is not None or e.get("kv_slots") is not None:
            parts.append(f"KV cache {fmt(e.get('kv_cache_mb'))} MB (max seen {fmt(e.get('kv_cache_mb_max'))}), kvSlots {e.get('kv_slots')}")
        warm = sum(r.extra.get("warming_statuses", 0) for r in cria_runs)
        if warm:
            spans = "; ".join(
                f"{p_name}: warming {fmt(a)} ms to ready {fmt(b)} ms after {ACTION_WORDS[phases[p].action]}"
                for p, a, b in e.get("warming_spans", [])
                for p_name in [phases[p].name]
            )
            parts.append(f"{warm} `warming` statuses ({spans})")
        else:
            parts.append("no `warming` status")
        parts.append(f"{c_reask} re-ask(s)")
        stops = ", ".join(f"{k} {v}" for k, v in sorted(e.get("stops", {}).items()))
        parts.append(f"stop reasons in its log (whole run): {stops or 'none logged'}")
        if "prompts" in e:
            full, from_full, from_quick = e["prompts"]
            parts.append(f"generations not cancelled (whole run): {from_full} from the full prompt (up to {full} tokens on this machine), {from_quick} from a quick one")
        at_rest = e.get("at_rest")
        if at_rest:
            ends = ", ".join(f"{k} {v}" for k, v in sorted(at_rest.items()))
            parts.append(f"suggestions at a resting cursor (after cria/prefetch, whole run): {sum(at_rest.values())} ({ends})")
        parts.append(f"cria/status matched to {sc['numbers_for']} of {sc['answered']} answered keystrokes")
        print(f"- cria: {'; '.join(parts)}.")
        over = [r for run in cria_runs for r in run.requests
                if r.phase == pi and r.kind == "key" and r.latency_ms and r.latency_ms > args.budget_ms]
        if over:
            print(f"- cria: {len(over)} answers came later than latencyBudgetMs = {args.budget_ms} ms (max {max(r.latency_ms for r in over):.0f} ms).")
    if llama_runs:
        e = llama_runs[-1].extra
        jobs = [j for run in llama_runs for j in run.jobs if j.phase == pi]
        computed = sum((j.prompt_tokens or 0) - (j.reused_tokens or 0) for j in jobs if j.reused_tokens is not None)
        spec_lat = [j.latency_ms for j in jobs if j.kind == "spec" and j.latency_ms is not None]
        parts = [f"healthy after {fmt(median([r.extra.get('load_s', 0) for r in llama_runs]), 1)} s (not timed)"]
        if scenario == "steady":
            parts.append(f"warm-up {fmt(e.get('warmup_ms'))} ms")
        if e.get("kv_cache_mb") is not None:
            parts.append(f"KV cache {fmt(e['kv_cache_mb'])} MiB (its log)")
        parts.append(f"{len(jobs)} HTTP requests in the phase ({l_spec} speculative, median {fmt(median(spec_lat))} ms; "
                     f"{l_ring} extra-context), {computed:,} prompt tokens computed by them in all")
        extra_chunks = [r.extra_chunks for run in llama_runs for r in run.requests if r.phase == pi and r.extra_chunks is not None]
        if extra_chunks:
            parts.append(f"input_extra chunks per answered keystroke: median {fmt(median(extra_chunks))}, max {max(extra_chunks)}")
        print(f"- llama.vim: {'; '.join(parts)}.")
    for run in cria_runs + llama_runs:
        for note in dict.fromkeys(run.notes):
            print(f"- {run.server}: {note}")
    for name, rr in (("cria", cria_runs), ("llama.cpp", llama_runs)):
        if rr:
            shown = [s for s in rr[-1].shown if s[1] == pi]
            if shown:
                print(f"- {name}'s first suggestion in the phase: {shown[0][2][:100]!r}")
    return {
        "file": file, "scenario": scenario, "cria_first": c_first.get("from_key_ms"), "llama_first": l_first.get("from_key_ms"),
        "cria_none": c_first.get("none") and none_text(c_first), "llama_none": l_first.get("none") and none_text(l_first),
        "cria_p50": sc["p50"], "llama_p50": sl["p50"], "cria_p95": sc["p95"], "llama_p95": sl["p95"],
    }


def print_summary(rows: list[dict]) -> None:
    print()
    print("### Summary")
    print()
    print("First suggestion: ms from the timed phase's first keystroke to the first suggestion shown; latency over its answered keystrokes.")
    print()
    print("| file | scenario | first suggestion cria | llama.cpp | ratio | p50 cria | llama.cpp | ratio | p95 cria | llama.cpp | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        cf = r["cria_none"] if r["cria_first"] is None and r["cria_none"] else fmt(r["cria_first"])
        lf = r["llama_none"] if r["llama_first"] is None and r["llama_none"] else fmt(r["llama_first"])
        print(
            f"| {r['file']} | {r['scenario']} | {cf} | {lf} | {ratio(r['cria_first'], r['llama_first'])} "
            f"| {fmt(r['cria_p50'])} | {fmt(r['llama_p50'])} | {ratio(r['cria_p50'], r['llama_p50'])} "
            f"| {fmt(r['cria_p95'])} | {fmt(r['llama_p95'])} | {ratio(r['cria_p95'], r['llama_p95'])} |"
        )
    print()


def default_llama_server() -> str | None:
    home = os.environ.get("CRIA_HOME", str(Path.home() / ".cache" / "cria"))
    found = sorted(glob.glob(f"{home}/llama.cpp/*/bin/llama-server"))
    native = [f for f in found if "-avx2" not in f]
    return (native or found or [None])[-1]


def main() -> int:
    home = Path(os.environ.get("CRIA_HOME", str(Path.home() / ".cache" / "cria")))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Scenarios: " + "; ".join(f"{k}: {v.format(read=2, jump='~300')}" for k, v in SCENARIOS.items()))
    parser.add_argument("--cria", default=str(HERE.parent / "target" / "release" / "cria"), help="cria binary")
    parser.add_argument("--llama-server", default=default_llama_server(),
                        help="llama.cpp's llama-server (default: the one scripts/build-llama-cpp installed)")
    parser.add_argument("--gguf", default=str(home / "models" / "qwen2.5-coder-0.5b-instruct-q5_0.gguf"),
                        help="the GGUF file both servers load (default: Qwen2.5-Coder-0.5B Q5_0 in $CRIA_HOME/models)")
    parser.add_argument("--model", help="cria's `model` setting (default: the --gguf path)")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS) + ["all"],
                        help="scenario to run; repeatable; default: all (" + ", ".join(SCENARIOS) + ")")
    parser.add_argument("--source", action="append", type=Path,
                        help="file typed into, with a `# keystroke-replay: cursor` line and <stem>_body.txt beside it "
                             "(and for `jump` a `# keystroke-replay: jump` line and <stem>_jump_body.txt); repeatable; "
                             "default: benches/data/ledger.py and benches/data/header_value_parser.py")
    parser.add_argument("--body", type=Path, help="the text typed at the cursor (one --source only)")
    parser.add_argument("--quick", action="store_true", help=f"type only the first {QUICK_CHARS} characters of each body")
    parser.add_argument("--interval-ms", type=int, default=120, help="time between keystrokes (default 120)")
    parser.add_argument("--read-ms", type=int, default=2000, help="open-wait-type: reading time before typing; "
                        "switch/jump: before the first phase's typing (default 2000)")
    parser.add_argument("--pause-ms", type=int, default=1000, help="from a phase's last keystroke to the next switch or jump (default 1000)")
    parser.add_argument("--settle-ms", type=int, default=500, help="from a switch or jump to the first keystroke (default 500)")
    parser.add_argument("--line-pause-ms", type=int, default=0,
                        help="a pause at the end of each line typed, before the Enter that starts the next (default 0: none)")
    parser.add_argument("--max-tokens", type=int, default=32, help="cria maxTokens and llama n_predict (default 32)")
    parser.add_argument("--budget-ms", type=int, default=5000, help="cria latencyBudgetMs (default 5000)")
    parser.add_argument("--prompt-tokens", type=int, default=1536, help="cria promptTokens (default 1536)")
    parser.add_argument("--max-suffix-tokens", type=int, default=128, help="cria maxSuffixTokens (default 128)")
    parser.add_argument("--context", type=int, default=4096, help="cria contextLength and llama-server -c (default 4096)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama-server -t (default: all cores)")
    parser.add_argument("--n-prefix", type=int, default=256, help="llama.vim n_prefix: lines before the cursor (256)")
    parser.add_argument("--n-suffix", type=int, default=64, help="llama.vim n_suffix: lines after the cursor (64)")
    parser.add_argument("--t-max-prompt-ms", type=int, default=500, help="llama.vim t_max_prompt_ms (500)")
    parser.add_argument("--t-max-predict-ms", type=int, default=1000,
                        help="llama.vim t_max_predict_ms for speculative requests (1000; the first request for a position gets 250, as in llama.vim)")
    parser.add_argument("--ring-n-chunks", type=int, default=16, help="llama.vim ring_n_chunks: extra-context chunks (16; 0 turns the ring off)")
    parser.add_argument("--seed", type=int, default=1, help="seed of llama.vim's random chunk picks (default 1)")
    parser.add_argument("--no-llama-vim-cache", dest="llama_vim_cache", action="store_false",
                        help="llama.vim's result cache answers only the exact context of an answer (no look-ups on keystrokes)")
    parser.add_argument("--rounds", type=int, default=1, help="replays per server and scenario, alternating; samples are pooled")
    parser.add_argument("--only", choices=["cria", "llama"], help="replay against one server only")
    parser.add_argument("--load-timeout", type=float, default=300, help="seconds to wait for a model to load")
    parser.add_argument("--warmup-timeout", type=float, default=600, help="seconds the steady state's warm-up may take")
    parser.add_argument("--json", help="write every request's record to this file")
    parser.add_argument("--log-dir", help="keep the servers' logs here (default: a temporary directory, removed)")
    args = parser.parse_args()
    args.model = args.model or args.gguf
    scenarios = list(SCENARIOS) if not args.scenario or "all" in args.scenario else list(dict.fromkeys(args.scenario))
    if args.only != "llama" and not Path(args.cria).exists():
        raise SystemExit(f"no cria binary at {args.cria} (--cria)")
    if args.only != "cria" and not (args.llama_server and Path(args.llama_server).exists()):
        raise SystemExit(f"no llama-server at {args.llama_server} (--llama-server; scripts/build-llama-cpp builds it)")
    if not Path(args.gguf).exists():
        raise SystemExit(f"no GGUF at {args.gguf} (--gguf; scripts/fetch-models --only qwen fetches it)")

    sources = args.source or DEFAULT_SOURCES
    if args.body and len(sources) != 1:
        raise SystemExit("--body needs exactly one --source")
    files = {p.name: load_data_file(p, args.body, args.quick) for p in sources}
    others = dict(files)
    for p in DEFAULT_SOURCES:  # `switch` needs a second file
        if p.name not in others:
            others[p.name] = load_data_file(p, None, args.quick)
    names = list(files)
    for f in files.values():
        log(f"{f.name}: {len(f.lines)} lines, cursor at line {f.cursor[0] + 1}"
            + (f", jump site at line {f.jump[0] + 1}" if f.jump else "") + f", body {len(f.body)} characters")

    plans: list[tuple[str, str, str, list[Phase]]] = []
    for name in names:
        a = files[name]
        b_name = next((n for n in names[names.index(name) + 1 :] + names + list(others) if n != name), None)
        b = others[b_name]
        for scenario in scenarios:
            if scenario == "jump" and (a.jump is None or not a.jump_body):
                log(f"{name}: no jump site; `jump` skipped")
                continue
            plans.append((name, scenario, b.name, build_plan(scenario, a, b, args)))

    results: dict[tuple[str, str, str], list[Run]] = {}
    loads = [os.getloadavg()[0]]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="keystroke-replay.") as tmp:
        for round_ in range(args.rounds):
            for name, scenario, b_name, phases in plans:
                workdir = Path(args.log_dir or tmp) / f"round-{round_ + 1}" / f"{Path(name).stem}-{scenario}"
                workdir.mkdir(parents=True, exist_ok=True)
                docs = {name: files[name], b_name: others[b_name]}
                for server in ("cria", "llama.cpp"):
                    if args.only and not server.startswith(args.only):
                        continue
                    log(f"round {round_ + 1}/{args.rounds}: {name} `{scenario}` against {server}")
                    run = Run(server, name, scenario, round_ + 1, phases)
                    if server == "cria":
                        run_cria(args, run, workdir)
                    else:
                        run_llama(args, run, workdir, docs)
                    run.extra["load_avg"] = os.getloadavg()[0]
                    loads.append(run.extra["load_avg"])
                    results.setdefault((name, scenario, server), []).append(run)
                    first = run.first_shown(timed_phase(phases))
                    log(f"{server}: first suggestion {fmt(first.get('from_key_ms'))} ms after the first keystroke")

    print()
    print(
        f"## Keystroke replay ({'quick, ' if args.quick else ''}{args.rounds} round(s))"
    )
    print()
    print(
        f"{Path(args.gguf).name}; cria maxTokens / llama n_predict {args.max_tokens}, cria latencyBudgetMs {args.budget_ms}, "
        f"promptTokens {args.prompt_tokens}; llama-server -c {args.context} -t {args.threads} -np 1; one keystroke every "
        f"{args.interval_ms} ms. cria is driven like its plugins (didOpen, cria/prefetch, didChange + inlineCompletion, "
        f"re-ask after warming or a late answer), llama-server like llama.vim (one request at a time, its cache, speculative requests, "
        f"ring of extra chunks). Server start and model load are not timed; nothing else is hidden except in `steady`."
    )
    summary = []
    for name, scenario, _, _ in plans:
        summary.append(print_table(name, scenario, results.get((name, scenario, "cria"), []),
                                   results.get((name, scenario, "llama.cpp"), []), args))
    print_summary(summary)
    print(
        f"- load average (1 min) at start and after each replay: {', '.join(f'{x:.1f}' for x in loads)} on "
        f"{os.cpu_count()} cores; the run took {(time.monotonic() - started) / 60:.1f} min."
    )
    if args.log_dir:
        print(f"- server logs: {args.log_dir}/round-*/<file>-<scenario>/")

    if args.json:
        records = []
        for (name, scenario, server), runs in results.items():
            for run in runs:
                records.append({
                    "file": name, "scenario": scenario, "server": server, "round": run.round,
                    "phases": [
                        {"name": p.name, "doc": p.doc.name, "action": p.action, "timed": p.timed,
                         "cursor": p.cursor, "keystrokes": [k.label for k in p.keys],
                         "action_s": round(run.action_t[i] - run.origin, 4) if i < len(run.action_t) else None,
                         "first_key_s": round(run.first_key_t[i] - run.origin, 4) if i < len(run.first_key_t) and run.first_key_t[i] else None,
                         "first_suggestion": run.first_shown(i)}
                        for i, p in enumerate(run.phases)
                    ],
                    "requests": [r.record(run.origin) for r in run.requests],
                    "http_requests": [j.record(run.origin) for j in run.jobs],
                    "shown": [{"t_s": round(t - run.origin, 4), "phase": p, "text": text, "how": how} for t, p, text, how in run.shown],
                    "statuses": [{"t_s": round(t - run.origin, 4), **s} for t, s in run.statuses],
                    "notes": run.notes,
                    "extra": {k: v for k, v in run.extra.items() if k != "log_rows"},
                })
        Path(args.json).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": records}, indent=1))
        log(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
