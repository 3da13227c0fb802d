#!/usr/bin/env python3
"""HumanEval infilling: pass@1 of cria's language server vs llama.cpp /infill.

For each task of the HumanEval single-line and multi-line infilling sets
(Bavarian et al., 2022) this opens the task's code as a document in the real
``cria lsp`` server over stdio, asks for an inline completion at the hole,
splices the answer in and runs the task's tests in a sandbox.  The same tasks
then go through llama.cpp's ``llama-server`` ``/infill`` endpoint on the same
GGUF file, with the same prompt windows and the same generation budget, and
its answer is spliced in raw (no post-processing at all).  Greedy decoding
both ways, one sample per task: pass@1.

Prints one markdown table per set (pass@1, empty answers, mean and p50
latency per completion, both ways) on stdout; progress goes to stderr.
Standard library only.  See benches/README.md ("HumanEval infilling") for
what exactly is measured and how to read the numbers.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import math
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realcode  # noqa: E402  (benches/realcode.py)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SETS = {
    "single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi": "HumanEval-MultiLineInfilling.jsonl.gz",
}
HUMANEVAL_SETS = ("single", "multi")
SETS_ALL = ("single", "multi", "fresh", "mid")
# Sets scored on the first line of an answer (llama.vim's accept-line, raw's first line).
SINGLE_LINE_SETS = ("single", "fresh", "mid")
# Qwen2.5-Coder's prefix-suffix-middle template: <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>.
FIM_CONTROL_TOKENS = 3
# cria caps the suffix window of PSM prompts at `maxSuffixTokens` tokens
# (server/src/protocol/config.rs, DEFAULT_MAX_SUFFIX_TOKENS): --max-suffix-tokens.


def log(message: str) -> None:
    print(f"humaneval-infill: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Tasks


@dataclass
class Task:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str


def data_dir(path: Path) -> Path:
    """The folder holding the .jsonl.gz files: PATH itself or PATH/data."""
    for candidate in (path / "data", path):
        if (candidate / SETS["single"]).exists() or (candidate / SETS["multi"]).exists():
            return candidate
    raise SystemExit(f"no HumanEval infilling data under {path} (expected {path}/data/{SETS['single']}); pass --data PATH")


def load_tasks(folder: Path, name: str) -> list[Task]:
    file = folder / SETS[name]
    tasks = []
    with gzip.open(file, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                tasks.append(Task(r["task_id"], r["entry_point"], r["prompt"], r["suffix"], r["canonical_solution"], r["test"]))
    return tasks


def sample(tasks: list[Task], limit: int | None, how: str) -> list[Task]:
    """`first`: the first N tasks.  `stride`: N tasks evenly spread over the
    file (index floor(i * len / N)), so a small sample covers many of the 164
    problems instead of the first few (the multi-line file has 5,815 tasks,
    35 per problem on average, in problem order)."""
    if limit is None or limit >= len(tasks):
        return tasks
    if how == "first":
        return tasks[:limit]
    return [tasks[(i * len(tasks)) // limit] for i in range(limit)]


# ---------------------------------------------------------------------------
# Documents: where the cursor is and how an answer is spliced in


@dataclass
class Document:
    """The text the editor holds and the cursor at the hole.

    ``blank-line`` layout (cria's default): an empty line is opened at the
    hole (prompt + "\\n" + suffix), cursor at its column 0, as an editor
    user who presses Enter before typing the missing lines has it; the
    spliced program keeps that line break after the completion.  ``hole``
    layout (llama.cpp's default, the dataset's own): the text is prompt +
    suffix and the cursor at the end of the prompt, which (the prompt ending
    with a line break) is column 0 of the suffix's first line, in front of
    existing code."""

    text: str
    cursor: int  # byte offset into text.encode()

    @staticmethod
    def for_task(task: Task, layout: str) -> "Document":
        middle = "\n" if layout == "blank-line" else ""
        text = task.prompt + middle + task.suffix
        return Document(text, len(task.prompt.encode("utf-8")))

    def position(self, offset: int | None = None) -> dict:
        """LSP position (UTF-8 byte columns) of a byte offset (default: cursor)."""
        data = self.text.encode("utf-8")[: self.cursor if offset is None else offset]
        line = data.count(b"\n")
        return {"line": line, "character": len(data) - (data.rfind(b"\n") + 1)}

    def offset(self, position: dict) -> int:
        data = self.text.encode("utf-8")
        start = 0
        for _ in range(position["line"]):
            nl = data.find(b"\n", start)
            if nl < 0:
                return len(data)
            start = nl + 1
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        return min(start + position["character"], end)

    def splice(self, insert: str, replace_end: int | None = None) -> str:
        """The document with `insert` at the cursor, replacing the text up
        to byte `replace_end` when given."""
        data = self.text.encode("utf-8")
        end = self.cursor if replace_end is None else max(self.cursor, replace_end)
        return (data[: self.cursor] + insert.encode("utf-8") + data[end:]).decode("utf-8", errors="replace")


def program(task: Task, code: str) -> str:
    """The file the sandbox runs, as human-eval-infilling's harness builds it."""
    return f"{code}\n{task.test}\n\ncheck({task.entry_point})\n"


# ---------------------------------------------------------------------------
# Sandbox

SANDBOX_BOOT = r"""
import resource, runpy, sys
for limit, value in ((resource.RLIMIT_AS, 4 << 30), (resource.RLIMIT_FSIZE, 64 << 20), (resource.RLIMIT_NPROC, 512)):
    try:
        resource.setrlimit(limit, (value, value))
    except (ValueError, OSError):
        pass
# As human-eval's reliability guard: the tested code has no business
# deleting files, killing processes or starting programs.
import os, shutil, subprocess
def _denied(*args, **kwargs):
    raise PermissionError("disabled in the benchmark sandbox")
for _name in ("system", "kill", "killpg", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
              "truncate", "fork", "forkpty", "putenv", "unsetenv", "chmod", "chown", "lchown", "setuid", "execv", "execve"):
    if hasattr(os, _name):
        setattr(os, _name, _denied)
shutil.rmtree = shutil.move = shutil.chown = _denied
subprocess.Popen = _denied
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Sandbox:
    """Runs a program in a fresh scratch directory, in a subprocess with a
    timeout, an emptied environment, resource limits and, where the kernel
    allows unprivileged user namespaces, no network (``unshare -rn``: a new
    user and network namespace holding only a loopback that is down)."""

    def __init__(self, timeout: float, python: str, use_unshare: bool = True):
        self.timeout = timeout
        self.python = python
        self.prefix: list[str] = []
        self.flags = ["-I", "-S"]
        if use_unshare and shutil.which("unshare"):
            probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=20)
            if probe.returncode == 0:
                self.prefix = ["unshare", "-rn"]
            else:
                log(f"note: `unshare -rn` is not permitted here ({probe.stderr.decode(errors='replace').strip()}); "
                    "tests run without a network namespace")
        elif use_unshare:
            log("note: `unshare` not found; tests run without a network namespace")
        ok, detail = self.run("import math, hashlib, collections, itertools, re, string, fractions\nassert True\n")
        if not ok:
            log(f"note: `{python} -I -S` cannot run the probe ({detail}); using -I only")
            self.flags = ["-I"]
            ok, detail = self.run("assert True\n")
            if not ok:
                raise SystemExit(f"the sandbox cannot run Python: {detail}")

    def describe(self) -> str:
        net = "no network (unshare -rn)" if self.prefix else "network NOT isolated"
        return f"{self.python} {' '.join(self.flags)}, timeout {self.timeout:g} s, scratch dir, empty env, {net}"

    def run(self, source: str) -> tuple[bool, str]:
        """(passed, a short reason when it did not)."""
        with tempfile.TemporaryDirectory(prefix="cria-heval-") as scratch:
            Path(scratch, "program.py").write_text(source, encoding="utf-8")
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": scratch, "TMPDIR": scratch,
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
            cmd = self.prefix + [self.python, *self.flags, "-c", SANDBOX_BOOT, "program.py"]
            proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
            try:
                _, err = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.communicate()
                return False, f"timeout after {self.timeout:g} s"
            if proc.returncode == 0:
                return True, ""
            lines = [l for l in err.decode("utf-8", errors="replace").strip().splitlines() if l.strip()]
            return False, (lines[-1].strip() if lines else f"exit status {proc.returncode}")[:200]


# ---------------------------------------------------------------------------
# cria over LSP


class LspClient:
    """A minimal LSP client over a child's stdio (Content-Length framing)."""

    def __init__(self, cmd: list[str], env: dict, stderr_path: Path):
        self.stderr_file = open(stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file, env=env,
                                     start_new_session=True)
        self.next_id = 0
        self.lock = threading.Lock()
        self.pending: dict[int, queue.Queue] = {}
        self.notifications: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    def _send(self, message: dict) -> None:
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        with self.lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def _read_loop(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    self._closed()
                    return
                line = line.strip()
                if not line:
                    break
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length is None:
                continue
            body = out.read(length)
            if len(body) < length:
                self._closed()
                return
            message = json.loads(body)
            if "id" in message and "method" in message:
                # A server -> client request (window/workDoneProgress/create, ...).
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            elif "id" in message:
                q = self.pending.pop(message["id"], None)
                if q is not None:
                    q.put(message)
            else:
                self.notifications.put(message)

    def _closed(self) -> None:
        for q in list(self.pending.values()):
            q.put({"error": {"message": "server closed the connection"}})
        self.notifications.put(None)

    def request(self, method: str, params, timeout: float = 600) -> dict:
        self.next_id += 1
        q: queue.Queue = queue.Queue()
        self.pending[self.next_id] = q
        self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{method}: no answer within {timeout:g} s")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result")

    def notify(self, method: str, params) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.stderr_file.close()


@dataclass
class Answer:
    code: str  # the document with the completion spliced in (as accepted)
    completion: str  # what was inserted (as returned, for the record)
    latency_ms: float
    extra: dict = field(default_factory=dict)


@dataclass
class Case:
    """One cursor in one document, of any set: a HumanEval task (`task`,
    scored by its tests) or a real-code line (`code`, scored by string
    comparison of the cursor's line)."""

    set: str
    case_id: str
    doc: Document
    language: str = "python"
    name: str = "task.py"
    task: Task | None = None
    code: realcode.CodeCase | None = None

    @property
    def single(self) -> bool:
        return self.set in SINGLE_LINE_SETS


def humaneval_case(name: str, task: Task, layout: str) -> Case:
    return Case(name, task.task_id, Document.for_task(task, layout), task=task)


def code_case(c: realcode.CodeCase) -> Case:
    return Case(c.set, c.case_id, Document(c.text, c.cursor), realcode.LANGUAGE_IDS[c.language], Path(c.path).name, code=c)


def cursor_line(doc: Document) -> tuple[list[str], int, int]:
    """The document's lines, the cursor's line index and column (characters)."""
    before = doc.text.encode("utf-8")[: doc.cursor].decode("utf-8", errors="replace")
    lines = doc.text.split("\n")
    y = before.count("\n")
    return lines, y, len(before) - (before.rfind("\n") + 1)


class Cria:
    """cria's language server; `ablate` names an ingredient switched off
    through CRIA_ABLATE (binaries that do not know it ignore it)."""

    def __init__(self, args, workdir: Path, ablate: str | None = None):
        binary = Path(args.cria)
        if not binary.exists():
            raise SystemExit(f"{binary} not found: build it with `cargo build --release -p cria --bin cria` (or pass --cria PATH)")
        self.name = "cria" if not ablate else f"cria -{ablate}"
        env = dict(os.environ)
        env["RAYON_NUM_THREADS"] = str(args.threads)
        env.pop("CRIA_ABLATE", None)
        if ablate:
            env["CRIA_ABLATE"] = ablate
        env.setdefault("CRIA_LOG", "info")  # one line per completion (latency, tokens, stop reason) in the log
        self.stderr_path = workdir / ("cria.stderr" if not ablate else f"cria-no-{ablate}.stderr")
        self.client = LspClient([str(binary), "lsp"], env, self.stderr_path)
        self.count = 0
        options = {"model": args.model, "latencyBudgetMs": args.latency_budget_ms, "maxTokens": args.max_tokens,
                   "promptTokens": args.prompt_tokens, "contextLength": args.ctx,
                   "suffixShare": args.suffix_share, "maxSuffixTokens": args.max_suffix_tokens}
        started = time.monotonic()
        self.client.request("initialize", {
            "processId": os.getpid(), "rootUri": None, "clientInfo": {"name": "humaneval-infill"},
            "capabilities": {"general": {"positionEncodings": ["utf-8"]}, "window": {"workDoneProgress": True}},
            "initializationOptions": options,
        }, timeout=60)
        self.client.notify("initialized", {})
        while True:
            left = 600 - (time.monotonic() - started)
            try:
                message = self.client.notifications.get(timeout=max(left, 0.1))
            except queue.Empty:
                raise SystemExit("cria: the model did not become ready within 600 s (see " + str(self.stderr_path) + ")")
            if message is None:
                raise SystemExit("cria exited during start-up; its stderr:\n" + self.stderr_path.read_text(errors="replace")[-3000:])
            if message.get("method") == "window/showMessage":
                text = message["params"].get("message", "")
                log(f"cria says: {text}")
                if "setting" in text:  # a rejected initializationOptions value: the run would not be what was asked
                    raise SystemExit(f"cria rejected a setting: {text}")
            if message.get("method") == "cria/status":
                state = message["params"].get("state")
                if state == "ready":
                    break
                if state == "error":
                    raise SystemExit(f"cria could not load {args.model}: {message['params'].get('message')}")
        log(f"{self.name} ready ({args.model}) in {time.monotonic() - started:.1f} s")

    def complete(self, case: Case) -> dict[str, Answer]:
        doc = case.doc
        self.count += 1
        uri = f"file:///bench/{case.set}/{self.count}/{case.name}"
        self.client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": case.language, "version": 1, "text": doc.text}})
        started = time.perf_counter()
        try:
            result = self.client.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": doc.position(),
                # Automatic, as while typing: what users see most. (An
                # invoked request may be answered in several lines where one
                # is asked for here.)
                "context": {"triggerKind": 2},
            })
        finally:
            latency = (time.perf_counter() - started) * 1000
            self.client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        items = result.get("items", []) if isinstance(result, dict) else (result or [])
        if not items:
            return {self.name: Answer(doc.splice(""), "", latency, {"empty": True})}
        item = items[0]
        text = item["insertText"] if isinstance(item["insertText"], str) else item["insertText"].get("value", "")
        end = doc.offset(item["range"]["end"]) if item.get("range") else None
        extra = {"replaced": doc.text.encode()[doc.cursor:end].decode(errors="replace")} if end is not None else {}
        return {self.name: Answer(doc.splice(text, end), text, latency, extra)}

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------
# llama.cpp's llama-server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(port: int, method: str, path: str, body: dict | None = None, timeout: float = 600) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else {}
        except json.JSONDecodeError:
            return response.status, {"raw": data.decode(errors="replace")}
    finally:
        conn.close()


# llama.vim's defaults (autoload/llama.vim, s:default_config): lines of local
# context before and after the cursor line, tokens to predict.
LLAMA_VIM_N_PREFIX = 256
LLAMA_VIM_N_SUFFIX = 64


def llama_vim_context(doc: Document) -> dict:
    """llama.vim's s:fim_ctx_local for a cursor without a previous
    suggestion: input_prefix = the lines before the cursor line, each ended
    by a line break; prompt = the cursor line's text before the cursor;
    input_suffix = the cursor line's text after the cursor, a line break,
    the next lines and a final line break.  A cursor line of whitespace only
    sends an empty prompt and empty cursor-line suffix, and n_indent 0;
    otherwise n_indent is the cursor line's indentation."""
    lines, y, x = cursor_line(doc)
    line = lines[y]
    prefix_part, suffix_part = line[:x], line[x:]
    if line.strip() == "":
        indent = 0
        prefix_part = suffix_part = ""
    else:
        indent = len(line) - len(line.lstrip(" \t"))
    before = lines[max(0, y - LLAMA_VIM_N_PREFIX):y]
    after = lines[y + 1:y + 1 + LLAMA_VIM_N_SUFFIX]
    return {"prefix": "\n".join(before) + "\n", "middle": prefix_part, "suffix": suffix_part + "\n" + "\n".join(after) + "\n",
            "indent": indent, "lines": lines, "y": y, "x": x}


def llama_vim_render(ctx: dict, content: str) -> tuple[list[str], bool]:
    """llama.vim's s:fim_render: the suggestion's lines after its trimming
    and its rules for discarding suggestions that repeat existing text, and
    whether it can be accepted."""
    lines, y, x = ctx["lines"], ctx["y"], ctx["x"]
    out = content.split("\n")
    while out and out[-1] == "":
        out.pop()
    can_accept = True
    if not out:
        out = [""]
        can_accept = False
    line_cur = lines[y]
    if line_cur.strip() == "":
        lead = min(len(out[0]) - len(out[0].lstrip()), len(line_cur))
        line_cur = out[0][:lead]
        out[0] = out[0][lead:]
    cur_prefix, cur_suffix = line_cur[:x], line_cur[x:]

    def getline(i: int) -> str:
        return lines[i] if 0 <= i < len(lines) else ""

    def getlines(a: int, b: int) -> list[str]:  # inclusive range, like getline(a, b)
        return [lines[i] for i in range(a, b + 1) if 0 <= i < len(lines)]

    if len(out) == 1 and out[0] == "":
        out = [""]
    if len(out) > 1 and out[0] == "" and out[1:] == getlines(y + 1, y + len(out) - 1):
        out = [""]
    if len(out) == 1 and out[0] == cur_suffix:
        out = [""]
    cmp_y = y + 1
    while cmp_y < len(lines) - 1 and getline(cmp_y).strip() == "":
        cmp_y += 1
    if cur_prefix + out[0] == getline(cmp_y):
        if len(out) == 1:
            out = [""]
        elif len(out) == 2 and out[-1] == getline(cmp_y + 1)[:len(out[-1])]:
            out = [""]
        elif len(out) > 2 and out[1:] == getlines(cmp_y + 1, cmp_y + len(out) - 1):
            out = [""]
    out[-1] += cur_suffix
    if "\n".join(out).strip() == "":
        can_accept = False
    return [line_cur[:x]] + out, can_accept


def llama_vim_accept(doc: Document, ctx: dict, content: str, full: bool) -> tuple[str, str]:
    """The document after llama.vim's accept (Tab: `full`, every line;
    Shift-Tab: the first line only), and what was inserted for the record."""
    rendered, can_accept = llama_vim_render(ctx, content)
    if not can_accept:
        return doc.text, ""
    head, out = rendered[0], rendered[1:]
    lines, y = ctx["lines"], ctx["y"]
    new = [head + out[0]] + (out[1:] if full else [])
    shown = "\n".join(new)[len(lines[y][:ctx["x"]]):] if new[0].startswith(lines[y][:ctx["x"]]) else "\n".join(new)
    return "\n".join(lines[:y] + new + lines[y + 1:]), shown


class LlamaCpp:
    """llama-server's /infill on the same GGUF file; each case gets two
    requests, read as two columns: ``raw`` (the document split at the cursor,
    the answer used as returned: its first line on single-line sets) and
    ``llama.vim`` (llama.vim's request and post-processing).

    Same budget as cria: the prompt windows are cut here, before the
    request, to what cria gives itself for a prefix-suffix-middle template
    (the suffix's first min(promptTokens * suffixShare, maxSuffixTokens) tokens, the
    prefix's last promptTokens - 3 - that), with llama-server's own
    tokenizer (/tokenize, /detokenize); llama-server's own cut (prefix 3/4 of
    n_batch = 1,536 tokens, suffix 1/4 = 510) then leaves them alone.
    llama.vim's prefix is the raw prefix window without the cursor line's
    text (and at most 256 lines), so the two requests share their start and
    the second reuses the first's KV cache.  ``n_predict`` is cria's
    maxTokens.  llama-server adds its repo-level markers
    (``<|repo_name|>myproject``, ``<|file_sep|>filename``) before the FIM
    prefix, as it always does for Qwen2.5-Coder."""

    names = ("llama.vim", "raw")

    def __init__(self, args, workdir: Path):
        binary = Path(args.llama_server)
        if not binary.exists():
            raise SystemExit(f"{binary} not found: build it with `scripts/build-llama-cpp` (or pass --llama-server PATH)")
        gguf = resolve_gguf(args)
        self.port = free_port()
        self.stderr_path = workdir / "llama-server.log"
        self.log_file = open(self.stderr_path, "wb")
        cmd = [str(binary), "-m", str(gguf), "-t", str(args.threads), "-c", str(args.ctx), "--port", str(self.port),
               "--host", "127.0.0.1", "-np", "1"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.max_tokens = args.max_tokens
        room = args.prompt_tokens - FIM_CONTROL_TOKENS
        self.suffix_tokens = min(int(room * args.suffix_share), args.max_suffix_tokens)
        self.prefix_tokens = room - self.suffix_tokens
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("llama-server exited during start-up; its log:\n" + self.stderr_path.read_text(errors="replace")[-3000:])
            try:
                status, body = http_json(self.port, "GET", "/health", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - started > 300:
                raise SystemExit("llama-server did not become healthy within 300 s")
            time.sleep(0.25)
        log(f"llama-server ready ({gguf.name}, port {self.port}) in {time.monotonic() - started:.1f} s; "
            f"windows: prefix <= {self.prefix_tokens} tokens, suffix <= {self.suffix_tokens} tokens")

    def _tokens(self, text: str) -> list[int]:
        status, body = http_json(self.port, "POST", "/tokenize", {"content": text, "add_special": False})
        if status != 200:
            raise RuntimeError(f"/tokenize: {status} {body}")
        return body["tokens"]

    def _text(self, tokens: list[int]) -> str:
        status, body = http_json(self.port, "POST", "/detokenize", {"tokens": tokens})
        if status != 200:
            raise RuntimeError(f"/detokenize: {status} {body}")
        return body["content"]

    def prefix_window(self, prefix: str) -> str:
        p = self._tokens(prefix)
        return self._text(p[len(p) - self.prefix_tokens:]) if len(p) > self.prefix_tokens else prefix

    def suffix_window(self, suffix: str) -> str:
        s = self._tokens(suffix)
        return self._text(s[: self.suffix_tokens]) if len(s) > self.suffix_tokens else suffix

    def _infill(self, body: dict) -> tuple[str, float, dict]:
        common = {"input_extra": [], "n_predict": self.max_tokens, "temperature": 0, "top_k": 1, "top_p": 1.0, "min_p": 0.0,
                  "repeat_penalty": 1.0, "seed": 0, "cache_prompt": True, "stream": False}
        started = time.perf_counter()
        status, reply = http_json(self.port, "POST", "/infill", {**common, **body})
        latency = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"/infill: {status} {reply}")
        text = reply.get("content", "")
        extra = {"stop": reply.get("stop_type") or reply.get("stopping_word") or "", "tokens_evaluated": reply.get("tokens_evaluated"),
                 "tokens_cached": reply.get("tokens_cached")}
        return text, latency, extra

    def complete(self, case: Case) -> dict[str, Answer]:
        doc = case.doc
        data = doc.text.encode("utf-8")
        prefix, suffix = data[: doc.cursor].decode(), data[doc.cursor:].decode()
        win_prefix = self.prefix_window(prefix)
        out = {}
        # raw: everything before the cursor, everything after; a single-line
        # set reads the first line only, so generation stops at a line break
        # there (greedy: the same first line as the whole answer's).
        body = {"input_prefix": win_prefix, "input_suffix": self.suffix_window(suffix), "prompt": ""}
        if case.single:
            body["stop"] = ["\n"]
        text, latency, extra = self._infill(body)
        inserted = text.split("\n")[0] if case.single else text
        out["raw"] = Answer(doc.splice(inserted), inserted, latency, {**extra, "content": text})
        # llama.vim: its split of the document, its n_indent, its trimming.
        ctx = llama_vim_context(doc)
        cut = win_prefix.rfind("\n")
        vim_prefix = win_prefix[: cut + 1] if cut >= 0 else ""
        if len(win_prefix) >= len(prefix):  # the window holds the whole prefix: llama.vim's line limit applies
            vim_prefix = ctx["prefix"]
        else:
            kept = vim_prefix.split("\n")
            vim_prefix = "\n".join(kept[-(LLAMA_VIM_N_PREFIX + 1):])
        body = {"input_prefix": vim_prefix, "input_suffix": self.suffix_window(ctx["suffix"]), "prompt": ctx["middle"],
                "n_indent": ctx["indent"], "samplers": ["top_k", "top_p", "infill"], "stop": [],
                # llama.vim's first request stops at a line break after 250 ms; 1 ms makes that the first line break
                # (deterministic) on single-line sets; multi-line sets get no time limit.
                "t_max_predict_ms": 1 if case.single else 0}
        text, latency, extra = self._infill(body)
        code, shown = llama_vim_accept(doc, ctx, text, full=not case.single)
        out["llama.vim"] = Answer(code, shown, latency, {**extra, "content": text})
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()


def resolve_gguf(args) -> Path:
    """The GGUF file cria loads for --model: a path, or the [file] gguf of
    model-configs/NAME.toml in $CRIA_HOME/models."""
    if args.gguf:
        return Path(args.gguf)
    if args.model.endswith(".gguf"):
        return Path(args.model)
    import tomllib

    home = Path(os.environ.get("CRIA_HOME", Path.home() / ".cache" / "cria"))
    for config in (home / "model-configs" / f"{args.model}.toml", REPO / "model-configs" / f"{args.model}.toml"):
        if config.exists():
            gguf = home / "models" / tomllib.loads(config.read_text())["file"]["gguf"]
            if not gguf.exists():
                raise SystemExit(f"{gguf} not found: run scripts/fetch-models (or pass --gguf PATH)")
            return gguf
    raise SystemExit(f"no model config for {args.model}; pass --gguf PATH")


# ---------------------------------------------------------------------------
# The run


@dataclass
class Result:
    system: str
    set: str
    task_id: str
    passed: bool  # HumanEval: the tests pass; real-code sets: exact match of the cursor's line
    reason: str
    latency_ms: float
    completion: str
    extra: dict


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def score(case: Case, answer: Answer, sandbox: Sandbox) -> tuple[bool, str, dict]:
    if case.task is not None:
        ok, reason = sandbox.run(program(case.task, answer.code))
        return ok, reason, {}
    c = case.code
    new_lines = answer.code.split("\n")
    new_line = new_lines[c.line_index] if c.line_index < len(new_lines) else ""
    s = realcode.score_line(c, new_line)
    extra = {"language": c.language, "kind": c.kind, "accepted": s["accepted"], "split": s["split"], "doubled": s["doubled"],
             "line": new_line, "truth": c.truth, "typed": c.typed, "path": c.path, "line_index": c.line_index}
    return s["exact"], "" if s["exact"] else "mismatch", extra


def run(systems: list, cases: list[Case], sandbox: Sandbox, records, warmup: Case) -> list[Result]:
    """Every case through every system in turn (cria and its variants, then
    llama.cpp's two requests, then the next case): all see the same machine
    load, and a run cut short still compares the same cases.  The sets take
    turns case by case."""
    for system in systems:
        # One completion before timing anything: first-request costs
        # (allocations, thread pools, a cold cache) are not what is compared.
        system.complete(warmup)
    totals = {}
    for c in cases:
        totals[c.set] = totals.get(c.set, 0) + 1
    seen = {}
    passed = {}
    results = []
    for case in cases:
        seen[case.set] = seen.get(case.set, 0) + 1
        i = seen[case.set]
        for system in systems:
            names = getattr(system, "names", None) or (system.name,)
            try:
                answers = system.complete(case)
            except Exception as e:  # a failed request counts as a failed case
                log(f"[{'/'.join(names)} {case.set} {i}/{totals[case.set]}] {case.case_id}: request failed: {e}")
                answers = {n: Answer(case.doc.text, "", float("nan"), {"error": str(e)}) for n in names}
            for name, answer in answers.items():
                ok, reason, extra = score(case, answer, sandbox)
                passed[name, case.set] = passed.get((name, case.set), 0) + ok
                r = Result(name, case.set, case.case_id, ok, reason, answer.latency_ms, answer.completion, {**answer.extra, **extra})
                results.append(r)
                if records is not None:
                    records.write(json.dumps(r.__dict__, ensure_ascii=False) + "\n")
                    records.flush()
                log(f"[{name} {case.set} {i}/{totals[case.set]}] {case.case_id}: {'pass' if ok else 'FAIL'} "
                    f"{answer.latency_ms:.0f} ms (so far {passed[name, case.set]}/{i}) {answer.completion[:60]!r}")
    return results


# ---------------------------------------------------------------------------
# Statistics and tables

Z95 = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + Z95 * Z95 / n
    centre = (p + Z95 * Z95 / (2 * n)) / d
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(a: list[float], b: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over paired cases and its 95% percentile bootstrap
    interval (cases resampled with replacement, seeded)."""
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return sum(diffs) / n, means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def pct_ci(k: int, n: int) -> str:
    if n == 0:
        return "—"
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f}% [{100 * lo:.0f}–{100 * hi:.0f}]"


def diff_ci(rs: list[Result], peer: list[Result]) -> str:
    """cria − peer on the cases both have, in points, with the paired bootstrap interval."""
    theirs = {r.task_id: r.passed for r in peer}
    pairs = [(float(r.passed), float(theirs[r.task_id])) for r in rs if r.task_id in theirs]
    if not pairs:
        return "—"
    mean, lo, hi = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs])
    return f"{100 * mean:+.1f} [{100 * lo:+.0f}, {100 * hi:+.0f}]"


PEERS = ("llama.vim", "raw")
SET_TITLES = {"single": "HumanEval single-line", "multi": "HumanEval multi-line",
              "fresh": "fresh line (real code, cursor after auto-indent)", "mid": "mid-line (real code, cursor inside a line)"}


def system_order(results: list[Result]) -> list[str]:
    names = []
    for r in results:
        name = "raw" if r.system == "llamacpp" else r.system
        if name not in names:
            names.append(name)
    crias = [n for n in names if n not in PEERS]
    return crias + [n for n in PEERS if n in names]


def by_system(results: list[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for r in results:
        out.setdefault("raw" if r.system == "llamacpp" else r.system, []).append(r)
    return out


def humaneval_table(name: str, results: list[Result], note: str) -> str:
    rs_all = [r for r in results if r.set == name]
    groups = by_system(rs_all)
    n = len({r.task_id for r in rs_all})
    lines = [f"### {SET_TITLES[name]} ({n} tasks, {note})", "",
             "| system | tasks | pass@1 [95% CI] | empty | Δ vs llama.vim [95% CI] | Δ vs raw [95% CI] | p50 latency (ms) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for system in system_order(rs_all):
        rs = groups[system]
        k = sum(r.passed for r in rs)
        empty = sum(1 for r in rs if not r.completion.strip())
        lat = [r.latency_ms for r in rs if r.latency_ms == r.latency_ms]
        dv = diff_ci(rs, groups["llama.vim"]) if system != "llama.vim" and "llama.vim" in groups else ""
        dr = diff_ci(rs, groups["raw"]) if system != "raw" and "raw" in groups else ""
        p50 = f"{percentile(lat, 0.5):.0f}" if lat else "—"
        lines.append(f"| {system} | {len(rs)} | {pct_ci(k, len(rs))} | {empty} | {dv} | {dr} | {p50} |")
    return "\n".join(lines)


def code_table(name: str, results: list[Result], group: str, note: str) -> str:
    """One row per (language or cursor kind) and system, then all of them."""
    rs_all = [r for r in results if r.set == name]
    n = len({r.task_id for r in rs_all})
    keys = sorted({r.extra.get(group, "?") for r in rs_all}, key=lambda k: (realcode.LANGUAGES + realcode.KINDS + (k,)).index(k))
    title = "language" if group == "language" else "cursor kind"
    lines = [f"### {SET_TITLES[name]}, by {title} ({n} cursors, {note})", "",
             f"| {title} | system | n | exact [95% CI] | chars accepted (mean) | empty | split words | doubled spaces | Δ exact vs llama.vim [95% CI] | Δ exact vs raw [95% CI] |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in keys + ["all"]:
        sub = [r for r in rs_all if key == "all" or r.extra.get(group) == key]
        groups = by_system(sub)
        for system in system_order(sub):
            rs = groups[system]
            k = sum(r.passed for r in rs)
            acc = statistics.fmean(r.extra.get("accepted", 0) for r in rs)
            empty = sum(1 for r in rs if not r.completion.strip())
            split = sum(1 for r in rs if r.extra.get("split"))
            doubled = sum(1 for r in rs if r.extra.get("doubled"))
            dv = diff_ci(rs, groups["llama.vim"]) if system != "llama.vim" and "llama.vim" in groups else ""
            dr = diff_ci(rs, groups["raw"]) if system != "raw" and "raw" in groups else ""
            label = f"**{key}**" if key == "all" else key
            lines.append(f"| {label} | {system} | {len(rs)} | {pct_ci(k, len(rs))} | {acc:.1f} | {empty} | {split} | {doubled} | {dv} | {dr} |")
    return "\n".join(lines)


def summary_table(results: list[Result], sets: list[str]) -> str:
    """Variant × set: pass@1 or exact match with intervals (the ablation table)."""
    lines = ["### Summary: system × set (pass@1 or exact match, 95% Wilson interval; Δ vs raw, paired bootstrap)", "",
             "| system | " + " | ".join(SET_TITLES[s].split(" (")[0] for s in sets) + " |",
             "| --- | " + " | ".join("---:" for _ in sets) + " |"]
    for system in system_order(results):
        cells = []
        for s in sets:
            groups = by_system([r for r in results if r.set == s])
            rs = groups.get(system, [])
            if not rs:
                cells.append("—")
                continue
            cell = pct_ci(sum(r.passed for r in rs), len(rs))
            if system != "raw" and "raw" in groups:
                cell += f"; Δ {diff_ci(rs, groups['raw'])}"
            cells.append(cell)
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_tables(results: list[Result], note: str) -> None:
    sets = [s for s in SETS_ALL if any(r.set == s for r in results)]
    print(summary_table(results, sets))
    print()
    for s in sets:
        if s in HUMANEVAL_SETS:
            print(humaneval_table(s, results, note))
        else:
            code_note = note.split("; ")[-1]  # the seed (or the records file), not HumanEval's sample
            print(code_table(s, results, "language", code_note))
            if s == "mid":
                print()
                print(code_table(s, results, "kind", code_note))
        print()


def main() -> int:
    cria_home = Path(os.environ.get("CRIA_HOME", Path.home() / ".cache" / "cria"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "eval" / "human-eval-infilling",
                    help="the human-eval-infilling folder (holding data/*.jsonl.gz)")
    ap.add_argument("--sets", default="single,multi,fresh,mid", help="comma-separated: single, multi (HumanEval), fresh, mid (real code)")
    ap.add_argument("--only", choices=("cria", "llamacpp"), help="run one system only")
    ap.add_argument("--limit", type=int, default=164, help="at most N tasks per HumanEval set (see --sample); 0: every task")
    ap.add_argument("--per-language", type=int, default=60, help="cursors per language in each real-code set")
    ap.add_argument("--languages", default=",".join(realcode.LANGUAGES), help="languages of the real-code sets")
    ap.add_argument("--seed", type=int, default=2, help="picks the real-code files and cursors (tune on 1, report 2)")
    ap.add_argument("--ablate", default="", help="comma-separated cria ingredients: one more cria run per name with CRIA_ABLATE=name")
    ap.add_argument("--tasks", help="comma-separated task ids to run (e.g. MultiLineInfilling/HumanEval/9/L0_L11), instead of --limit's sample")
    ap.add_argument("--sample", choices=("stride", "first"), default="stride",
                    help="with --limit: N tasks evenly spread over the set, or its first N")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per test run in the sandbox")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="cria model name or .gguf path")
    ap.add_argument("--gguf", help="GGUF file for llama-server; by default the file of --model's config in $CRIA_HOME/models")
    ap.add_argument("--cria", default=str(REPO / "target" / "release" / "cria"), help="the cria binary")
    ap.add_argument("--llama-server", help="the llama-server binary", default=str(Path(os.environ.get("LLAMA_BIN", cria_home / "llama.cpp" / "0.3.36" / "bin")) / "llama-server"))
    ap.add_argument("--max-tokens", type=int, default=128, help="generation budget, both ways (cria maxTokens, llama.cpp n_predict)")
    ap.add_argument("--prompt-tokens", type=int, default=1536, help="prompt budget, both ways (cria promptTokens)")
    ap.add_argument("--suffix-share", type=float, default=0.25, help="cria's suffixShare, used to size llama.cpp's suffix window")
    ap.add_argument("--max-suffix-tokens", type=int, default=128,
                    help="cria's maxSuffixTokens (cap on the suffix of prefix-suffix-middle prompts), used to size llama.cpp's suffix window too")
    ap.add_argument("--latency-budget-ms", type=int, default=600000,
                    help="cria latencyBudgetMs (cria's maximum, 10 minutes: quality, not latency, is measured)")
    ap.add_argument("--ctx", type=int, default=4096, help="context size, both ways (cria contextLength, llama-server -c)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="threads, both ways")
    ap.add_argument("--layout", choices=("hole", "blank-line"), default="blank-line",
                    help="HumanEval document: an empty line inserted at the hole, or prompt+suffix with the cursor at the hole (see README)")
    ap.add_argument("--python", default=sys.executable or "python3", help="interpreter for the tests")
    ap.add_argument("--no-unshare", action="store_true", help="do not try a network namespace for the tests")
    ap.add_argument("--records", type=Path, help="write one JSON line per case and system (completion, result, latency) here")
    ap.add_argument("--log-dir", type=Path, help="keep the servers' logs (cria's stderr, llama-server's output) here")
    ap.add_argument("--tables-from", type=Path, metavar="RECORDS",
                    help="print the tables of a --records file (of a run cut short, say) and exit")
    ap.add_argument("--check-canonical", action="store_true", help="only run the canonical solutions through the sandbox (harness check)")
    args = ap.parse_args()
    # Stop cleanly on SIGTERM too (CI timeouts, kill): the servers are shut down in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.tables_from:
        rows = [json.loads(l) for l in args.tables_from.read_text(encoding="utf-8").splitlines() if l.strip()]
        print_tables([Result(**r) for r in rows], f"from {args.tables_from.name}")
        return 0

    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    for n in names:
        if n not in SETS_ALL:
            ap.error(f"unknown set {n!r} (single, multi, fresh, mid)")
    limit = args.limit or None
    cases_by_set: dict[str, list[Case]] = {}
    he = [n for n in names if n in HUMANEVAL_SETS]
    if he:
        folder = data_dir(args.data)
        for n in he:
            tasks = load_tasks(folder, n)
            if args.tasks:
                wanted = {t.strip() for t in args.tasks.split(",") if t.strip()}
                tasks = [t for t in tasks if t.task_id in wanted]
            else:
                tasks = sample(tasks, limit, args.sample)
            cases_by_set[n] = [humaneval_case(n, t, args.layout) for t in tasks]
    languages = tuple(l.strip() for l in args.languages.split(",") if l.strip())
    for n in names:
        if n not in HUMANEVAL_SETS:
            cases_by_set[n] = [code_case(c) for c in realcode.build_set(n, args.seed, args.per_language, languages)]
    note = ("all" if limit is None else f"stride sample of {limit}" if args.sample == "stride" else f"first {limit}") + f"; real code seed {args.seed}"
    sandbox = Sandbox(args.timeout, args.python, not args.no_unshare)
    log(f"sandbox: {sandbox.describe()}")
    log("cases: " + ", ".join(f"{n} {len(c)}" for n, c in cases_by_set.items()))

    if args.check_canonical:
        bad = total = 0
        for n in he:
            for c in cases_by_set[n]:
                t = c.task
                total += 1
                ok, reason = sandbox.run(program(t, t.prompt + t.canonical_solution + t.suffix))
                if not ok:
                    bad += 1
                    log(f"canonical solution fails: {t.task_id}: {reason}")
        print(f"canonical solutions: {total - bad} of {total} pass")
        return 1 if bad else 0

    # The sets take turns case by case, so a run cut short (see --tables-from) has as many cases of each.
    order = sorted(((i, k, c) for k, (n, cs) in enumerate(cases_by_set.items()) for i, c in enumerate(cs)), key=lambda x: (x[0], x[1]))
    cases = [c for _, _, c in order]
    records = open(args.records, "w", encoding="utf-8") if args.records else None
    # Not a benchmark task, so that no measured answer comes from a cache.
    warmup = humaneval_case("single", Task("warmup", "area", "import math\n\n\ndef area(r):\n", "\n\nprint(area(2.0))\n",
                                           "    return math.pi * r * r\n", ""), args.layout)
    results: list[Result] = []
    systems = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cria-heval-run-") as workdir:
        try:
            if args.only != "llamacpp":
                systems.append(Cria(args, Path(workdir)))
                for ingredient in [a.strip() for a in args.ablate.split(",") if a.strip()]:
                    systems.append(Cria(args, Path(workdir), ingredient))
            if args.only != "cria":
                systems.append(LlamaCpp(args, Path(workdir)))
            results = run(systems, cases, sandbox, records, warmup)
        finally:
            for system in systems:
                system.close()
            if args.log_dir:
                args.log_dir.mkdir(parents=True, exist_ok=True)
                for log_file in Path(workdir).iterdir():
                    shutil.copy(log_file, args.log_dir / log_file.name)
            if records:
                records.close()
    log(f"done in {time.monotonic() - started:.0f} s")

    print(f"Quality: HumanEval pass@1 and real-code exact match (greedy, one sample per case); model {args.model}; "
          f"{args.max_tokens} new tokens at most, prompt budget {args.prompt_tokens} tokens; {args.threads} threads; "
          f"HumanEval layout {args.layout}; cria binary {args.cria}"
          + (f"; ablations: {args.ablate}" if args.ablate else "") + ".")
    print()
    print_tables(results, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
