#!/usr/bin/env python3
"""Keystroke replay: per-keystroke completion latency, cria vs llama-server.

Opens a real source file (benches/data/ledger.py, about 1,500 Qwen tokens),
types a function body into it one keystroke at a time at a fixed interval,
and after every keystroke asks for a completion without waiting for earlier
answers, as an editor does.  The same keystrokes are replayed twice:

* against ``cria lsp`` over stdio: an incremental ``didChange`` followed at
  once by ``textDocument/inlineCompletion``; a newer request supersedes the
  older one (cria answers the older one with an empty list);
* against llama.cpp's ``llama-server`` ``/infill`` endpoint with
  ``cache_prompt``, driven the way llama.vim drives it: a window of 256
  lines before and 64 lines after the cursor line, the current line up to
  the cursor as ``prompt``, ``n_indent``, llama.vim's sampler settings, one
  HTTP connection per keystroke, and the previous connection closed when
  the next keystroke fires (llama.vim stops its curl job).

Prints a markdown table of latency per answered request (p50/p95/max), how
many requests were superseded, the prompt tokens reused per request, and the
ratio llama.cpp / cria (> 1 means cria is faster).  Progress goes to stderr,
the table to stdout.  Standard library only.

See benches/README.md ("Keystroke replay") for what exactly is measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "# keystroke-replay: cursor"
INDENT_UNIT = 4
WARMUP_BUDGET_MS = 60_000


def log(message: str) -> None:
    print(f"keystroke-replay: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The typing session: the document, and the keystrokes an editor would send.


@dataclass
class Keystroke:
    """One keystroke: the edit it makes and the editor state after it."""

    label: str  # what was typed, for logs ("a", "<enter>", "<bs>")
    start: tuple[int, int]  # (line, column) of the replaced range, 0-based
    end: tuple[int, int]
    text: str  # inserted text
    cursor: tuple[int, int]  # cursor after the edit
    lines: list[str]  # the whole document after the edit, as lines


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def typing_session(source: str, body: str) -> tuple[str, tuple[int, int], list[Keystroke]]:
    """The document before typing, the cursor, and the keystrokes.

    The marker line in ``source`` becomes an empty line indented like the
    marker, with the cursor at its end (where an editor leaves it after Enter
    on the docstring line).  ``body`` is typed with its own relative
    indentation: Enter inserts a newline plus auto-indentation (the current
    line's, one level more after a ``:``), Backspace removes one indentation
    level, Tab adds one; every other character is one keystroke.
    """
    lines = source.split("\n")
    marker_rows = [i for i, line in enumerate(lines) if line.strip() == MARKER]
    if len(marker_rows) != 1:
        raise SystemExit(f"the source must contain exactly one line `{MARKER}`")
    row = marker_rows[0]
    base = indent_of(lines[row])
    lines[row] = " " * base
    initial = "\n".join(lines)
    cursor = (row, base)

    keystrokes: list[Keystroke] = []
    cur_row, cur_col = cursor

    def edit(label: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        nonlocal cur_row, cur_col
        (r0, c0), (r1, c1) = start, end
        assert r0 == r1, "edits stay on one line"
        head, tail = lines[r0][:c0], lines[r1][c1:]
        new = (head + text + tail).split("\n")
        lines[r0 : r1 + 1] = new
        cur_row = r0 + len(new) - 1
        cur_col = len(new[-1]) - len(tail)
        keystrokes.append(Keystroke(label, start, end, text, (cur_row, cur_col), list(lines)))

    body_lines = body.rstrip("\n").split("\n")
    for i, body_line in enumerate(body_lines):
        if i > 0:
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
    return initial, cursor, keystrokes


# ---------------------------------------------------------------------------
# Results


@dataclass
class Request:
    """One completion request and what became of it."""

    index: int  # keystroke index (-1: warm-up)
    sent: float  # monotonic seconds, when the keystroke fired
    answered: float | None = None
    outcome: str = "pending"  # suggestion, empty, superseded, abandoned, error
    text: str = ""
    prompt_tokens: int | None = None
    reused_tokens: int | None = None
    generated_tokens: int | None = None
    prefill_ms: float | None = None  # llama-server: timings.prompt_ms
    decode_ms: float | None = None
    server_latency_ms: float | None = None  # cria: lastLatencyMs
    stop: str | None = None
    local: bool = False  # answered without running the model (cache, typed-through)
    key: str | None = None  # llama.vim's result-cache key of the request

    @property
    def latency_ms(self) -> float | None:
        return None if self.answered is None else (self.answered - self.sent) * 1e3

    @property
    def is_answer(self) -> bool:
        return self.outcome in ("suggestion", "empty")


@dataclass
class Run:
    name: str
    requests: list[Request] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


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


# ---------------------------------------------------------------------------
# cria over LSP


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
        self.on_response = None  # callback(id, time, message), called on the reader thread
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

    def request(self, method: str, params) -> int:
        with self.cond:
            rid = self.next_id
            self.next_id += 1
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
                now = time.monotonic()
                self._dispatch(message, now)
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _dispatch(self, message: dict, now: float) -> None:
        method = message.get("method")
        if method is not None and "id" in message:
            # A request from the server: progress tokens, anything else: null.
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
                self.cond.wait(left)
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


def run_cria(args, initial: str, cursor: tuple[int, int], keys: list[Keystroke], workdir: Path) -> Run:
    run = Run("cria")
    log_path = workdir / "cria.log"
    env = dict(os.environ)
    env["CRIA_LOG"] = env.get("CRIA_LOG_BENCH", "info")
    with log_path.open("wb") as stderr:
        client = LspClient([args.cria, "lsp"], env, stderr)
        try:
            _replay_cria(args, client, run, initial, cursor, keys)
        finally:
            code = client.close()
    if code != 0:
        run.notes.append(f"cria exited with status {code}")
    # Join cria's own record of each completion (log line and cria/status are
    # written one after the other for every completion) with the requests.
    log_rows = parse_cria_log(log_path)
    run.extra["log_rows"] = log_rows
    run.extra["log_path"] = str(log_path)
    for line in log_path.read_text(errors="replace").splitlines():
        if " ERROR " in line or " WARN " in line:
            run.notes.append("cria log: " + line.strip()[:300])
    return run


def _replay_cria(args, client: LspClient, run: Run, initial: str, cursor, keys: list[Keystroke]) -> None:
    uri = (HERE / "data" / "replay" / Path(args.source).name).resolve().as_uri()
    # The warm-up completion fills the KV cache with the file's prompt; it
    # runs under a long budget (a cold 1,500-token prefill can take longer
    # than the replay's budget on a busy 2-core machine), which is then set
    # back with workspace/didChangeConfiguration before typing starts.
    options = {
        "model": args.model,
        "maxTokens": args.max_tokens,
        "latencyBudgetMs": max(args.budget_ms, WARMUP_BUDGET_MS) if args.warmup else args.budget_ms,
        "promptTokens": args.prompt_tokens,
        "contextLength": args.context,
        "maxSuffixTokens": args.max_suffix_tokens,
    }
    capabilities = {
        "general": {"positionEncodings": ["utf-8"]},
        "window": {"workDoneProgress": True},
        "textDocument": {"synchronization": {"dynamicRegistration": False}, "inlineCompletion": {"dynamicRegistration": False}},
    }
    init = client.call(
        "initialize",
        {"processId": os.getpid(), "rootUri": None, "capabilities": capabilities, "initializationOptions": options},
    )
    encoding = init.get("result", {}).get("capabilities", {}).get("positionEncoding")
    if encoding != "utf-8":
        run.notes.append(f"cria negotiated position encoding {encoding!r} (the file is ASCII, so columns agree)")
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

    client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": initial}})

    def inline_params(pos):
        return {
            "textDocument": {"uri": uri},
            "position": {"line": pos[0], "character": pos[1]},
            "context": {"triggerKind": 2},
        }

    by_id: dict[int, Request] = {}
    lock = threading.Lock()

    def on_response(rid, now, message):
        with lock:
            req = by_id.get(rid)
            if req is None:
                return
            req.answered = now
            if "error" in message:
                req.outcome = "error"
                req.text = json.dumps(message["error"])
                return
            result = message.get("result")
            items = result.get("items", []) if isinstance(result, dict) else (result or [])
            req.text = items[0].get("insertText", "") if items else ""
            if isinstance(req.text, dict):
                req.text = req.text.get("value", "")
            req.outcome = "suggestion" if items else "empty"

    client.on_response = on_response

    if args.warmup:
        # Until one warm-up completion ends before its (long) budget: cria
        # keeps the prompt chunks it prefilled when a deadline cuts a
        # request, so every try gets further.
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            warm = Request(-1, time.monotonic())
            rid = client.request("textDocument/inlineCompletion", inline_params(cursor))
            with lock:
                by_id[rid] = warm
            try:
                client.wait(rid, WARMUP_BUDGET_MS / 1e3 + 30)
            except TimeoutError:
                raise SystemExit("cria did not answer the warm-up completion at all") from None
            log(f"cria: warm-up completion {tries} (cold prompt) took {warm.latency_ms:.0f} ms ({warm.outcome})")
            finished = warm.latency_ms < WARMUP_BUDGET_MS
            if finished or time.monotonic() - started > args.warmup_timeout:
                break
        run.extra["warmup_ms"] = (time.monotonic() - started) * 1e3
        run.extra["warmup_tries"] = tries
        if not finished:
            run.notes.append(f"the warm-up did not finish within {args.warmup_timeout:.0f} s; the replay starts with a partly cold cache")
        client.notify("workspace/didChangeConfiguration", {"settings": {"latencyBudgetMs": args.budget_ms}})
        time.sleep(0.5)
    status_mark = len(client.statuses)

    log(f"cria: typing {len(keys)} keystrokes, one every {args.interval_ms} ms")
    t0 = time.monotonic() + 0.05
    version = 1
    for i, key in enumerate(keys):
        target = t0 + i * args.interval_ms / 1e3
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        version += 1
        change = {
            "range": {
                "start": {"line": key.start[0], "character": key.start[1]},
                "end": {"line": key.end[0], "character": key.end[1]},
            },
            "text": key.text,
        }
        req = Request(i, time.monotonic())
        client.notify(
            "textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]}
        )
        # Register before sending, so a fast answer cannot arrive first.
        with client.cond:
            rid = client.next_id
            client.next_id += 1
        with lock:
            by_id[rid] = req
            run.requests.append(req)
        client._send(
            {"jsonrpc": "2.0", "id": rid, "method": "textDocument/inlineCompletion", "params": inline_params(key.cursor)}
        )
    typed_until = time.monotonic()
    log(f"cria: typing took {typed_until - t0:.1f} s; waiting for the last answers")
    client.wait_for(
        lambda: all(r.answered is not None for r in run.requests), timeout=args.budget_ms / 1e3 + 30
    )
    for r in run.requests:
        if r.answered is None:
            r.outcome = "unanswered"
    # Superseded: answered empty while a newer request had already been sent.
    for r in run.requests:
        if r.outcome == "empty" and any(o.sent < r.answered for o in run.requests if o.index > r.index):
            r.outcome = "superseded"

    # The server's copy of the document must equal ours.
    expected = "\n".join(keys[-1].lines)
    text = client.call("cria/documentText", {"uri": uri}).get("result")
    if text != expected:
        run.notes.append("cria's copy of the document differs from the editor's after the replay")
    run.extra["statuses"] = [s for _, s in client.statuses[status_mark:] if s.get("lastLatencyMs") is not None]
    run.notes.extend(client.messages)


def attach_cria_numbers(run: Run) -> None:
    """Attach cria's per-completion numbers (cria/status, log) to requests.

    cria sends one cria/status after every completion that reached the
    engine, just before the answer; it carries no request id, so each answer
    is paired with the unclaimed status whose server-side latency best fits
    the latency measured here (never above it).  The log lines of the
    same completions (same order) add the token count and stop reason.
    """
    statuses = run.extra.get("statuses", [])
    rows = run.extra.get("log_rows", [])
    # Log rows and statuses describe the same completions in the same order.
    joined = []
    j = 0
    for s in statuses:
        row = None
        for k in range(j, len(rows)):
            cand = rows[k]
            if cand.get("reused") == str(s.get("reusedTokens")) and cand.get("prompt") == str(s.get("promptTokens")):
                row, j = cand, k + 1
                break
        joined.append((s, row))
    # The warm-up's completion comes first in the log.
    used = [False] * len(joined)
    answered = sorted((r for r in run.requests if r.answered is not None), key=lambda r: r.answered)
    for req in answered:
        best = None
        for k, (s, _) in enumerate(joined):
            if used[k]:
                continue
            gap = req.latency_ms - s["lastLatencyMs"]
            if gap >= -2 and (best is None or gap < best[0]):
                best = (gap, k)
        if best is None or best[0] > 250:
            continue
        used[best[1]] = True
        s, row = joined[best[1]]
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
    # Over every completion the engine worked on: those cancelled while still
    # queued (stop "cancelled", nothing reused or generated) never started.
    started = [
        s for s, row in joined
        if row is None or not (row.get("stop", "").strip('"') == "cancelled" and row.get("reused") == "0" and row.get("generated") == "0")
    ]
    run.extra["started"] = len(started)
    run.extra["all_reused"] = [s.get("reusedTokens") for s in started if s.get("reusedTokens") is not None]
    run.extra["all_prompt"] = [s.get("promptTokens") for s in started if s.get("promptTokens") is not None]
    stops: dict[str, int] = {}
    for row in rows:
        stop = row.get("stop", "?").strip('"')
        stops[stop] = stops.get(stop, 0) + 1
    run.extra["stops"] = stops


# ---------------------------------------------------------------------------
# llama-server /infill, the llama.vim way


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


def llama_vim_request(lines: list[str], cursor: tuple[int, int], args) -> dict:
    """The /infill body llama.vim builds for a cursor (auto-triggered FIM)."""
    row, col = cursor
    line = lines[row]
    line_prefix, line_suffix = line[:col], line[col:]
    if not line.strip():
        # llama.vim: a line of only whitespace is completed from its start.
        indent, line_prefix, line_suffix = 0, "", ""
    else:
        indent = len(line_prefix) - len(line_prefix.lstrip(" \t"))
    before = lines[max(0, row - args.n_prefix) : row]
    after = lines[row + 1 : row + 1 + args.n_suffix]
    return {
        "input_prefix": "\n".join(before) + "\n",
        "input_suffix": line_suffix + "\n" + "\n".join(after) + "\n",
        "input_extra": [],
        "prompt": line_prefix,
        "n_predict": args.max_tokens,
        "n_indent": indent,
        "top_k": 40,
        "top_p": 0.99,
        "stream": False,
        "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": True,
        "t_max_prompt_ms": args.t_max_prompt_ms,
        "t_max_predict_ms": args.t_max_predict_ms,
    }


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


def run_llama(args, initial: str, cursor: tuple[int, int], keys: list[Keystroke], workdir: Path) -> Run:
    run = Run("llama.cpp")
    server = LlamaServer(args, workdir)
    try:
        log(f"llama-server: starting on port {server.port} ({' '.join(server.flags) or 'no --cache-reuse'})")
        run.extra["load_s"] = server.wait_healthy(args.load_timeout)
        log(f"llama-server: healthy after {run.extra['load_s']:.1f} s")
        _, tok = http_json(server.port, "POST", "/tokenize", {"content": initial})
        run.extra["source_tokens"] = len(tok.get("tokens", [])) if tok else None
        _replay_llama(args, server, run, initial, cursor, keys)
    finally:
        server.stop()
    for line in server.log_path.read_text(errors="replace").splitlines():
        if re.match(r"^\S+ E ", line):  # llama.cpp's log level E: errors
            run.notes.append("llama-server log: " + line.strip()[:300])
    run.extra["log_path"] = str(server.log_path)
    return run


SEP = "\u00ce"  # llama.vim's separator between prefix, middle and suffix in its cache keys


def llama_vim_cached(cache: dict[str, str], body: dict) -> str | None:
    """llama.vim's result cache: the answer for exactly this context, or for
    the context up to 10 characters back when the characters typed since
    are the start of that answer (then the rest of it)."""
    past = body["input_prefix"] + SEP + body["prompt"]
    hit = cache.get(past + SEP + body["input_suffix"])
    if hit is not None:
        return hit
    for i in range(10):
        removed = past[-(1 + i) :]
        earlier = cache.get(past[: -(1 + i)] + SEP + body["input_suffix"])
        if earlier is None:
            continue
        if earlier == "" or earlier[: i + 1] != removed:
            return None
        return earlier[i + 1 :]
    return None


def _replay_llama(args, server: LlamaServer, run: Run, initial: str, cursor, keys: list[Keystroke]) -> None:
    lock = threading.Lock()
    done = threading.Condition(lock)
    cache: dict[str, str] = {}

    def fire(req: Request, body: dict, conn: http.client.HTTPConnection) -> None:
        try:
            conn.request("POST", "/infill", body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            now = time.monotonic()
            answer = json.loads(data)
            with lock:
                if req.outcome == "abandoned":
                    return
                req.answered = now
                if resp.status != 200:
                    req.outcome = "error"
                    req.text = data.decode(errors="replace")[:300]
                    return
                req.text = answer.get("content", "")
                req.outcome = "suggestion" if req.text.strip() else "empty"
                if req.key is not None:
                    cache[req.key] = req.text
                t = answer.get("timings", {})
                req.reused_tokens = t.get("cache_n")
                evaluated = answer.get("tokens_evaluated")
                req.prompt_tokens = evaluated if evaluated is not None else (t.get("cache_n", 0) + t.get("prompt_n", 0))
                req.generated_tokens = t.get("predicted_n")
                req.prefill_ms = t.get("prompt_ms")
                req.decode_ms = t.get("predicted_ms")
                req.stop = answer.get("stop_type") or ("eos" if answer.get("stopped_eos") else None)
        except (OSError, http.client.HTTPException, ValueError) as error:
            with lock:
                if req.outcome == "pending":
                    # Not closed by us: a real failure (timeout, refused, bad JSON).
                    req.outcome = "error"
                    req.text = f"{type(error).__name__}: {error}"
        finally:
            with done:
                done.notify_all()

    def start(req: Request, body: dict, timeout: float = args.budget_ms / 1e3 + 60) -> http.client.HTTPConnection:
        req.key = body["input_prefix"] + SEP + body["prompt"] + SEP + body["input_suffix"]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        threading.Thread(target=fire, args=(req, body, conn), daemon=True).start()
        return conn

    def abandon(req: Request, conn: http.client.HTTPConnection) -> None:
        with lock:
            if req.outcome != "pending":
                return
            req.outcome = "abandoned"
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()

    initial_lines = initial.split("\n")
    if args.warmup:
        warm = Request(-1, time.monotonic())
        conn = start(warm, llama_vim_request(initial_lines, cursor, args), timeout=args.warmup_timeout)
        with done:
            done.wait_for(lambda: warm.outcome != "pending", timeout=args.warmup_timeout + 5)
        conn.close()
        run.extra["warmup_ms"] = warm.latency_ms
        run.extra["warmup_outcome"] = warm.outcome
        if not warm.is_answer:
            run.notes.append(f"the warm-up failed ({warm.outcome}: {warm.text}); the replay starts with a cold cache")
        log(f"llama-server: warm-up completion (cold prompt) took {fmt(warm.latency_ms)} ms ({warm.outcome})")

    log(f"llama-server: typing {len(keys)} keystrokes, one every {args.interval_ms} ms")
    t0 = time.monotonic() + 0.05
    previous: tuple[Request, http.client.HTTPConnection] | None = None
    for i, key in enumerate(keys):
        target = t0 + i * args.interval_ms / 1e3
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if previous is not None:
            abandon(*previous)  # llama.vim stops the previous curl job
            previous = None
        req = Request(i, time.monotonic())
        body = llama_vim_request(key.lines, key.cursor, args)
        with lock:
            hit = llama_vim_cached(cache, body) if args.llama_vim_cache else None
        run.requests.append(req)
        if hit is not None:
            req.answered, req.text, req.local, req.stop = time.monotonic(), hit, True, "client cache"
            req.outcome = "suggestion" if hit.strip() else "empty"
            continue
        previous = (req, start(req, body))
    log("llama-server: typing done; waiting for the last answer")
    with done:
        done.wait_for(lambda: all(r.outcome != "pending" for r in run.requests), timeout=args.budget_ms / 1e3 + 60)
    for r in run.requests:
        if r.outcome == "pending":
            r.outcome = "unanswered"
    if previous is not None:
        previous[1].close()


# ---------------------------------------------------------------------------
# Report


def fmt(value, digits=0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def summarise(run: Run) -> dict:
    answered = [r for r in run.requests if r.is_answer]
    lat = [r.latency_ms for r in answered]
    with_numbers = [r for r in answered if r.reused_tokens is not None]
    last = run.requests[-1] if run.requests else None
    return {
        "requests": len(run.requests),
        "p50": percentile(lat, 50),
        "p95": percentile(lat, 95),
        "max": max(lat) if lat else None,
        "last": last.latency_ms if last and last.is_answer else None,
        "suggestion": sum(r.outcome == "suggestion" for r in run.requests),
        "empty": sum(r.outcome == "empty" for r in run.requests),
        "superseded": sum(r.outcome in ("superseded", "abandoned") for r in run.requests),
        "local": sum(r.local for r in run.requests),
        "model_p50": percentile([r.latency_ms for r in answered if not r.local and r.outcome == "suggestion"], 50),
        "errors": sum(r.outcome in ("error", "unanswered") for r in run.requests),
        "reused": mean([r.reused_tokens for r in with_numbers]),
        "prompt": mean([r.prompt_tokens for r in with_numbers if r.prompt_tokens is not None]),
        "computed": mean([r.prompt_tokens - r.reused_tokens for r in with_numbers if r.prompt_tokens is not None]),
        "generated": mean([r.generated_tokens for r in answered if r.generated_tokens is not None]),
        "decode_ms": median([r.decode_ms for r in answered if r.decode_ms is not None]),
        "other_ms": median(
            [r.latency_ms - r.decode_ms for r in answered if r.decode_ms is not None]
        ),
        "prefill_ms": median([r.prefill_ms for r in answered if r.prefill_ms is not None]),
        "numbers_for": len(with_numbers),
        "answered": len(answered),
    }


def print_table(cria: dict, llama: dict, args, n_keys: int, body_chars: int, source_tokens) -> None:
    def ratio(key):
        a, b = cria.get(key), llama.get(key)
        if not a or b is None:
            return "—"
        return f"{b / a:.2f}×"

    rows = [
        ("latency p50 of answered requests (ms)", "p50", 0, True),
        ("latency p95 of answered requests (ms)", "p95", 0, True),
        ("latency max of answered requests (ms)", "max", 0, True),
        ("latency of the last keystroke's request (ms)", "last", 0, True),
        ("latency p50 of suggestions from a model run (ms)", "model_p50", 0, True),
        ("answered with a suggestion", "suggestion", 0, False),
        ("… of which without a model run (typed-through / client cache)", "local", 0, False),
        ("answered empty (newest request)", "empty", 0, False),
        ("superseded (cria) / abandoned (llama.cpp)", "superseded", 0, False),
        ("errors or unanswered", "errors", 0, False),
        ("prompt tokens per answered request (mean)", "prompt", 0, False),
        ("prompt tokens reused per answered request (mean)", "reused", 0, False),
        ("prompt tokens computed per answered request (mean)", "computed", 0, False),
        ("tokens generated per answered request (mean)", "generated", 1, False),
        ("decode time per answered request (median ms)", "decode_ms", 0, True),
        ("rest of the latency: prefill, queueing (median ms)", "other_ms", 0, True),
    ]
    print()
    print(
        f"Keystroke replay: {n_keys} keystrokes ({body_chars}-character body) every {args.interval_ms} ms "
        f"into {Path(args.source).name} ({source_tokens if source_tokens else '?'} tokens), "
        f"{Path(args.gguf).name}, maxTokens/n_predict {args.max_tokens}, cria latencyBudgetMs {args.budget_ms}, "
        f"{args.threads} threads, {args.rounds} round(s)."
    )
    print()
    print("| measure | cria | llama.cpp | llama.cpp / cria |")
    print("| --- | ---: | ---: | ---: |")
    for label, key, digits, with_ratio in rows:
        print(f"| {label} | {fmt(cria.get(key), digits)} | {fmt(llama.get(key), digits)} | {ratio(key) if with_ratio else ''} |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cria", default=str(HERE.parent / "target" / "release" / "cria"), help="cria binary")
    parser.add_argument("--llama-server", required=True, help="llama.cpp's llama-server binary")
    parser.add_argument("--gguf", required=True, help="the GGUF file both servers load")
    parser.add_argument("--model", help="cria's `model` setting (default: the --gguf path)")
    parser.add_argument("--source", default=str(HERE / "data" / "ledger.py"), help="the file typed into")
    parser.add_argument("--body", default=str(HERE / "data" / "ledger_body.txt"), help="the text typed")
    parser.add_argument("--quick", action="store_true", help="type only the first 40 characters of the body")
    parser.add_argument("--interval-ms", type=int, default=120, help="time between keystrokes (default 120)")
    parser.add_argument("--max-tokens", type=int, default=32, help="cria maxTokens and llama n_predict (default 32)")
    parser.add_argument("--budget-ms", type=int, default=5000, help="cria latencyBudgetMs (default 5000)")
    parser.add_argument("--prompt-tokens", type=int, default=1536, help="cria promptTokens (default 1536)")
    parser.add_argument("--max-suffix-tokens", type=int, default=128, help="cria maxSuffixTokens (default 128)")
    parser.add_argument("--context", type=int, default=4096, help="cria contextLength and llama-server -c (default 4096)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama-server -t (default: all cores)")
    parser.add_argument("--n-prefix", type=int, default=256, help="llama.vim n_prefix: lines before the cursor (256)")
    parser.add_argument("--n-suffix", type=int, default=64, help="llama.vim n_suffix: lines after the cursor (64)")
    parser.add_argument("--t-max-prompt-ms", type=int, default=500, help="llama.vim t_max_prompt_ms (500)")
    parser.add_argument(
        "--t-max-predict-ms", type=int, help="llama.vim t_max_predict_ms (default: the same as --budget-ms)"
    )
    parser.add_argument(
        "--no-llama-vim-cache",
        dest="llama_vim_cache",
        action="store_false",
        help="do not emulate llama.vim's client-side result cache (which answers typed-through keystrokes without a request)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="replays per server, alternating; samples are pooled")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the untimed first completion")
    parser.add_argument("--only", choices=["cria", "llama"], help="replay against one server only")
    parser.add_argument("--load-timeout", type=float, default=300, help="seconds to wait for a model to load")
    parser.add_argument("--warmup-timeout", type=float, default=600, help="seconds the warm-up may take (cria retries)")
    parser.add_argument("--json", help="write every request's record to this file")
    parser.add_argument("--log-dir", help="keep the servers' logs here (default: a temporary directory, removed)")
    args = parser.parse_args()
    args.model = args.model or args.gguf
    if args.t_max_predict_ms is None:
        args.t_max_predict_ms = args.budget_ms

    source = Path(args.source).read_text()
    body = Path(args.body).read_text().rstrip("\n")
    if args.quick:
        body = body[:40]
    initial, cursor, keys = typing_session(source, body)
    log(f"{len(keys)} keystrokes for a {len(body)}-character body at line {cursor[0] + 1} of {args.source}")

    runs: dict[str, list[Run]] = {"cria": [], "llama": []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="keystroke-replay.") as tmp:
        for round_ in range(args.rounds):
            workdir = Path(args.log_dir or tmp) / f"round-{round_ + 1}"
            workdir.mkdir(parents=True, exist_ok=True)
            if args.only != "llama":
                run = run_cria(args, initial, cursor, keys, workdir)
                attach_cria_numbers(run)
                runs["cria"].append(run)
                loads.append(os.getloadavg()[0])
            if args.only != "cria":
                runs["llama"].append(run_llama(args, initial, cursor, keys, workdir))
                loads.append(os.getloadavg()[0])
            log(f"round {round_ + 1}/{args.rounds} done")

    def pooled(name: str) -> Run:
        merged = Run(name)
        for r in runs[name]:
            merged.requests.extend(r.requests)
            merged.notes.extend(r.notes)
        if runs[name]:
            merged.extra = runs[name][-1].extra
        return merged

    cria, llama = pooled("cria"), pooled("llama")
    sc, sl = summarise(cria), summarise(llama)
    source_tokens = llama.extra.get("source_tokens")
    print_table(sc, sl, args, len(keys), len(body), source_tokens)

    # Details under the table.
    if runs["cria"]:
        e = cria.extra
        stops = ", ".join(f"{k} {v}" for k, v in sorted(e.get("stops", {}).items()))
        all_reused, all_prompt = e.get("all_reused", []), e.get("all_prompt", [])
        print(
            f"- cria: model loaded in {e.get('load_s', 0):.1f} s; warm-up (cold prompt) {fmt(e.get('warmup_ms'))} ms "
            f"in {e.get('warmup_tries', 0)} request(s); "
            f"{e.get('completions', 0)} completions were recorded in time in the last round (stop reasons from its log, "
            f"warm-up included: {stops or 'none logged'}), {e.get('started', 0)} of them started on the engine "
            f"(the rest were cancelled while queued), reusing on average {fmt(mean(all_reused))} of "
            f"{fmt(mean(all_prompt))} prompt tokens; cria/status matched to {sc['numbers_for']} of {sc['answered']} "
            f"answered requests."
        )
        capped = [
            r for r in cria.requests
            if r.latency_ms is not None and r.server_latency_ms is None and not r.local
            and args.budget_ms + 100 <= r.latency_ms <= args.budget_ms + 500
        ]
        if capped:
            print(
                f"- cria: {len(capped)} of {len(cria.requests)} requests were answered (empty) at the budget's hard cap "
                f"(latencyBudgetMs + 150 ms) with no completion recorded: the engine had not returned by then."
            )
        over = [r for r in cria.requests if r.latency_ms is not None and r.latency_ms > args.budget_ms]
        if over:
            kinds = ", ".join(f"{k} {sum(r.outcome == k for r in over)}" for k in sorted({r.outcome for r in over}))
            print(
                f"- cria: {len(over)} answers arrived later than latencyBudgetMs = {args.budget_ms} ms "
                f"(max {max(r.latency_ms for r in over):.0f} ms; {kinds})."
            )
        slow = [r.latency_ms for r in cria.requests if r.outcome == "superseded"]
        if slow:
            print(
                f"- cria: superseded requests were answered (empty) after a median {fmt(median(slow))} ms, "
                f"max {fmt(max(slow))} ms."
            )
    if runs["llama"]:
        e = llama.extra
        print(
            f"- llama-server: healthy after {e.get('load_s', 0):.1f} s; warm-up (cold prompt) {fmt(e.get('warmup_ms'))} ms; "
            f"median prompt_ms of answered requests {fmt(sl['prefill_ms'])} ms."
        )
    print(f"- load average (1 min) at start and after each replay: {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores.")
    if args.log_dir:
        print(f"- server logs: {args.log_dir}/round-*/")
    for run in (cria, llama):
        for note in dict.fromkeys(run.notes):
            print(f"- {run.name}: {note}")
    if cria.requests:
        last = cria.requests[-1]
        print(f"- cria's last suggestion: {last.text[:120]!r}")
    if llama.requests:
        last = llama.requests[-1]
        print(f"- llama.cpp's last suggestion: {last.text[:120]!r}")

    if args.json:
        records = {
            name: [vars(r) | {"latency_ms": r.latency_ms} for r in run.requests]
            for name, run in (("cria", cria), ("llama.cpp", llama))
        }
        records["keystrokes"] = [k.label for k in keys]
        Path(args.json).write_text(json.dumps(records, indent=1))
        log(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
