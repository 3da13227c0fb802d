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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SETS = {
    "single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi": "HumanEval-MultiLineInfilling.jsonl.gz",
}
SET_TITLES = {"single": "single-line", "multi": "multi-line"}
SYSTEMS = ("cria", "llamacpp")
SYSTEM_TITLES = {"cria": "cria (LSP inlineCompletion)", "llamacpp": "llama.cpp /infill (raw)"}
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
    code: str  # the document with the completion spliced in
    completion: str  # what was inserted (as returned, for the record)
    latency_ms: float
    extra: dict = field(default_factory=dict)


class Cria:
    name = "cria"

    def __init__(self, args, workdir: Path):
        binary = Path(args.cria)
        if not binary.exists():
            raise SystemExit(f"{binary} not found: build it with `cargo build --release -p cria --bin cria` (or pass --cria PATH)")
        env = dict(os.environ)
        env["RAYON_NUM_THREADS"] = str(args.threads)
        env.setdefault("CRIA_LOG", "info")  # one line per completion (latency, tokens, stop reason) in the log
        self.stderr_path = workdir / "cria.stderr"
        self.client = LspClient([str(binary), "lsp"], env, self.stderr_path)
        self.layout = args.layout
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
        log(f"cria ready ({args.model}) in {time.monotonic() - started:.1f} s")

    def complete(self, task: Task) -> Answer:
        doc = Document.for_task(task, self.layout)
        self.count += 1
        uri = f"file:///bench/task_{self.count}.py"
        self.client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": doc.text}})
        started = time.perf_counter()
        result = self.client.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": doc.position(),
            "context": {"triggerKind": 1},  # Invoked
        })
        latency = (time.perf_counter() - started) * 1000
        self.client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        items = result.get("items", []) if isinstance(result, dict) else (result or [])
        if not items:
            return Answer(doc.splice(""), "", latency, {"empty": True})
        item = items[0]
        text = item["insertText"] if isinstance(item["insertText"], str) else item["insertText"].get("value", "")
        end = doc.offset(item["range"]["end"]) if item.get("range") else None
        extra = {"replaced": doc.text.encode()[doc.cursor:end].decode(errors="replace")} if end is not None else {}
        return Answer(doc.splice(text, end), text, latency, extra)

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


class LlamaCpp:
    """llama-server's /infill on the same GGUF file, answers used raw.

    Same budget as cria: the prompt windows are cut here, before the
    request, to what cria gives itself for a prefix-suffix-middle template
    (the suffix's first min(promptTokens * suffixShare, maxSuffixTokens) tokens, the
    prefix's last promptTokens - 3 - that), with llama-server's own
    tokenizer (/tokenize, /detokenize); llama-server's own cut (prefix 3/4 of
    n_batch = 1,536 tokens, suffix 1/4 = 510) then leaves them alone.
    ``n_predict`` is cria's maxTokens.  llama-server adds its repo-level
    markers (``<|repo_name|>myproject``, ``<|file_sep|>filename``) before
    the FIM prefix, as it always does for Qwen2.5-Coder; that is part of
    what "raw llama.cpp" is."""

    name = "llamacpp"

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
        self.layout = args.layout_llamacpp
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

    def windows(self, prefix: str, suffix: str) -> tuple[str, str]:
        p = self._tokens(prefix)
        if len(p) > self.prefix_tokens:
            prefix = self._text(p[len(p) - self.prefix_tokens:])
        s = self._tokens(suffix)
        if len(s) > self.suffix_tokens:
            suffix = self._text(s[: self.suffix_tokens])
        return prefix, suffix

    def complete(self, task: Task) -> Answer:
        doc = Document.for_task(task, self.layout)
        data = doc.text.encode("utf-8")
        prefix, suffix = data[: doc.cursor].decode(), data[doc.cursor:].decode()
        win_prefix, win_suffix = self.windows(prefix, suffix)
        body = {"input_prefix": win_prefix, "input_suffix": win_suffix, "input_extra": [], "prompt": "",
                "n_predict": self.max_tokens, "temperature": 0, "top_k": 1, "top_p": 1.0, "min_p": 0.0,
                "repeat_penalty": 1.0, "seed": 0, "cache_prompt": True, "stream": False}
        started = time.perf_counter()
        status, reply = http_json(self.port, "POST", "/infill", body)
        latency = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"/infill: {status} {reply}")
        text = reply.get("content", "")
        extra = {"stop": reply.get("stop_type") or reply.get("stopping_word") or "", "tokens_evaluated": reply.get("tokens_evaluated"),
                 "tokens_cached": reply.get("tokens_cached"), "empty": not text}
        return Answer(doc.splice(text), text, latency, extra)

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
    passed: bool
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


def run(systems: list, sets: dict[str, list[Task]], sandbox: Sandbox, records, warmup: Task) -> list[Result]:
    """Every task through every system in turn (cria, then llama.cpp, then
    the next task): both see the same machine load, and a run cut short
    still compares the same tasks."""
    for system in systems:
        # One completion before timing anything: first-request costs
        # (allocations, thread pools, a cold cache) are not what is compared.
        system.complete(warmup)
    # The sets take turns, task by task, so a run cut short (see
    # --tables-from) has as many tasks of each.
    order = sorted(((i, n, t) for n, tasks in sets.items() for i, t in enumerate(tasks, 1)), key=lambda x: x[0])
    passed = {(s.name, n): 0 for s in systems for n in sets}
    results = []
    for i, name, task in order:
        tasks = sets[name]
        for system in systems:
            try:
                answer = system.complete(task)
            except Exception as e:  # a failed request counts as a failed task
                log(f"[{system.name} {name} {i}/{len(tasks)}] {task.task_id}: request failed: {e}")
                answer = Answer(task.prompt + task.suffix, "", float("nan"), {"error": str(e)})
            ok, reason = sandbox.run(program(task, answer.code))
            passed[system.name, name] += ok
            r = Result(system.name, name, task.task_id, ok, reason, answer.latency_ms, answer.completion, answer.extra)
            results.append(r)
            if records is not None:
                records.write(json.dumps(r.__dict__, ensure_ascii=False) + "\n")
                records.flush()
            log(f"[{system.name} {name} {i}/{len(tasks)}] {task.task_id}: {'pass' if ok else 'FAIL'} "
                f"{answer.latency_ms:.0f} ms (so far {passed[system.name, name]}/{i}){'' if ok else ' - ' + reason[:80]}")
    return results


def table(name: str, tasks: int, results: list[Result], sample_note: str) -> str:
    lines = [f"### {SET_TITLES[name]} ({tasks} tasks, {sample_note})", "",
             "| system | tasks | pass@1 | passed | empty answers | mean latency (ms) | p50 latency (ms) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for system in SYSTEMS:
        rs = [r for r in results if r.system == system and r.set == name]
        if not rs:
            continue
        passed = sum(r.passed for r in rs)
        empty = sum(1 for r in rs if not r.completion.strip())
        lat = [r.latency_ms for r in rs if r.latency_ms == r.latency_ms]
        mean = f"{statistics.fmean(lat):.0f}" if lat else "—"
        p50 = f"{percentile(lat, 0.5):.0f}" if lat else "—"
        lines.append(f"| {SYSTEM_TITLES[system]} | {len(rs)} | {100 * passed / len(rs):.1f}% | {passed} | {empty} | {mean} | {p50} |")
    return "\n".join(lines)


def main() -> int:
    cria_home = Path(os.environ.get("CRIA_HOME", Path.home() / ".cache" / "cria"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "eval" / "human-eval-infilling",
                    help="the human-eval-infilling folder (holding data/*.jsonl.gz)")
    ap.add_argument("--sets", default="single,multi", help="comma-separated: single, multi")
    ap.add_argument("--only", choices=SYSTEMS, help="run one system only")
    ap.add_argument("--limit", type=int, help="at most N tasks per set (see --sample)")
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
                    help="cria's document: an empty line inserted at the hole, or prompt+suffix with the cursor at the hole (see README)")
    ap.add_argument("--layout-llamacpp", choices=("hole", "blank-line"), default="hole", help="the same for llama.cpp")
    ap.add_argument("--python", default=sys.executable or "python3", help="interpreter for the tests")
    ap.add_argument("--no-unshare", action="store_true", help="do not try a network namespace for the tests")
    ap.add_argument("--records", type=Path, help="write one JSON line per task and system (completion, result, latency) here")
    ap.add_argument("--log-dir", type=Path, help="keep the servers' logs (cria's stderr, llama-server's output) here")
    ap.add_argument("--tables-from", type=Path, metavar="RECORDS",
                    help="print the tables of a --records file (of a run cut short, say) and exit")
    ap.add_argument("--check-canonical", action="store_true", help="only run the canonical solutions through the sandbox (harness check)")
    args = ap.parse_args()
    # Stop cleanly on SIGTERM too (CI timeouts, kill): the servers are shut down in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.tables_from:
        rows = [json.loads(l) for l in args.tables_from.read_text(encoding="utf-8").splitlines() if l.strip()]
        results = [Result(**r) for r in rows]
        for n in SETS:
            done = {r.task_id for r in results if r.set == n}
            if done:
                print(table(n, len(done), results, f"from {args.tables_from.name}"))
                print()
        return 0

    folder = data_dir(args.data)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    for n in names:
        if n not in SETS:
            ap.error(f"unknown set {n!r} (single, multi)")
    sets = {n: sample(load_tasks(folder, n), args.limit, args.sample) for n in names}
    if args.tasks:
        wanted = {t.strip() for t in args.tasks.split(",") if t.strip()}
        sets = {n: [t for t in load_tasks(folder, n) if t.task_id in wanted] for n in names}
    sample_note = "all" if args.limit is None else (f"stride sample" if args.sample == "stride" else "first tasks")
    sandbox = Sandbox(args.timeout, args.python, not args.no_unshare)
    log(f"sandbox: {sandbox.describe()}")
    log("tasks: " + ", ".join(f"{SET_TITLES[n]} {len(t)}" for n, t in sets.items()) + f" from {folder}")

    if args.check_canonical:
        bad = 0
        for n, tasks in sets.items():
            for t in tasks:
                ok, reason = sandbox.run(program(t, t.prompt + t.canonical_solution + t.suffix))
                if not ok:
                    bad += 1
                    log(f"canonical solution fails: {t.task_id}: {reason}")
        print(f"canonical solutions: {sum(map(len, sets.values())) - bad} of {sum(map(len, sets.values()))} pass")
        return 1 if bad else 0

    records = open(args.records, "w", encoding="utf-8") if args.records else None
    # Not a benchmark task, so that no measured answer comes from a cache.
    warmup = Task("warmup", "area", "import math\n\n\ndef area(r):\n", "\n\nprint(area(2.0))\n", "    return math.pi * r * r\n", "")
    results: list[Result] = []
    systems = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cria-heval-run-") as workdir:
        try:
            for kind in SYSTEMS:
                if not args.only or args.only == kind:
                    systems.append((Cria if kind == "cria" else LlamaCpp)(args, Path(workdir)))
            results = run(systems, sets, sandbox, records, warmup)
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

    print(f"HumanEval infilling, pass@1 (greedy, one sample per task); model {args.model}; "
          f"{args.max_tokens} new tokens at most, prompt budget {args.prompt_tokens} tokens; {args.threads} threads; "
          f"document layout: cria {args.layout}, llama.cpp {args.layout_llamacpp}.")
    print()
    for n, tasks in sets.items():
        print(table(n, len(tasks), results, sample_note))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
