#!/usr/bin/env python3
"""Zed's edit-prediction request, posted to `cria serve` as Zed posts it.

Why: Zed has no inline completion over LSP, but its edit-prediction
provider `open_ai_compatible_api` posts a fill-in-the-middle prompt to any
OpenAI-compatible `/v1/completions` endpoint. This checks, at the protocol
level, that `cria serve` takes exactly that request and answers in the
shape Zed parses, so that pointing Zed at cria works (editors/zed/README.md).

How: starts `$CRIA_BIN serve` on a free loopback port with the Qwen2.5-Coder
model (a FIM model: Zed's prompt carries Qwen's FIM markers as text) and a
token, builds Zed's body for a cursor in a copy of benches/data/ledger.py
the way Zed's `fim.rs` does (`<|fim_prefix|>PREFIX<|fim_suffix|>SUFFIX
<|fim_middle|>`, `model`, `max_tokens`, `stop`; no `temperature`, no
`stream`, no `suffix`), serialized compactly with its keys in Zed's order
and sent with Zed's headers (Content-Type, `Authorization: Bearer` when a
key is set), then checks the answer as Zed reads it: status 200, `id`,
`object`, `created`, `model`, `choices[0].text`, `finish_reason`, `usage`'s
three counts; and that the FIM markers reached the model as control tokens
(one token each), and that the text, cleaned as Zed cleans it, is a
non-empty suggestion without FIM markers. Both stop lists Zed has sent
(4 strings now, 14 in earlier releases) are posted. Prints `ok`/`FAILED`
lines and `N passed, M failed`; never skips.

    CRIA_BIN=target/debug/cria python3 editors/zed/zed_request.py
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SOURCE = os.path.join(REPO, "benches", "data", "ledger.py")
MODEL = os.environ.get("CRIA_ZED_MODEL", "qwen2.5-coder-0.5b-instruct")
TOKEN = "zed-test-token"

# Zed's FIM stop lists for the Qwen format: fim.rs's `fim_stop_tokens`
# (now), and `get_fim_stop_tokens` (earlier releases: every format's markers).
STOP_NOW = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
STOP_BEFORE = [
    "<|endoftext|>", "<|file_separator|>", "<|fim_pad|>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<PRE>", "<SUF>", "<MID>",
    "[PREFIX]", "[SUFFIX]",
]
# What Zed cuts a completion at (fim.rs's `clean_fim_completion`).
END_MARKERS = STOP_BEFORE


class Failure(Exception):
    pass


def zed_prompt():
    """Qwen's FIM prompt around a cursor on a blank line in a function body:
    the lines around it, as Zed takes an excerpt of about 512 tokens around
    the cursor (its editable range)."""
    lines = open(SOURCE, encoding="utf-8").read().split("\n")
    row = next(i for i, line in enumerate(lines) if line.strip() == "# keystroke-replay: cursor")
    lines[row] = "        "
    start, end = max(0, row - 40), min(len(lines), row + 15)
    prefix = "\n".join(lines[start:row]) + "\n" + lines[row]
    suffix = "\n" + "\n".join(lines[row + 1:end])
    return f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>", suffix


def zed_body(model, prompt, max_tokens, stop):
    """serde_json::to_string of Zed's RawCompletionRequest: fields in
    declaration order, None fields (temperature, environment) left out,
    compact, non-ASCII as UTF-8."""
    return json.dumps(
        {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stop": stop},
        separators=(",", ":"), ensure_ascii=False,
    ).encode("utf-8")


def post(url, body, token=TOKEN):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def parse_like_zed(status, text):
    """What Zed does with the answer: non-2xx is an error; the body must
    parse as RawCompletionResponse (all fields required but finish_reason,
    unknown fields ignored); the first choice's text is the completion."""
    if not 200 <= status < 300:
        raise Failure(f"HTTP {status}: Zed reports `custom server error`: {text}")
    data = json.loads(text)
    for key, kind in (("id", str), ("object", str), ("created", int), ("model", str), ("choices", list), ("usage", dict)):
        if not isinstance(data.get(key), kind):
            raise Failure(f"`{key}` is not a {kind.__name__}: {text}")
    if data["created"] < 0:
        raise Failure("`created` must fit u64")
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = data["usage"].get(key)
        if not isinstance(value, int) or not 0 <= value < 2**32:
            raise Failure(f"usage.{key} is not a u32: {text}")
    if not data["choices"]:
        raise Failure("no choices: Zed would show nothing")
    choice = data["choices"][0]
    if not isinstance(choice.get("text"), str):
        raise Failure(f"choices[0].text is not a string: {text}")
    if choice.get("finish_reason") is not None and not isinstance(choice["finish_reason"], str):
        raise Failure(f"finish_reason is neither null nor a string: {text}")
    return data, choice["text"]


def clean_like_zed(text):
    for marker in END_MARKERS:
        pos = text.find(marker)
        if pos >= 0:
            text = text[:pos]
    return text


def start_server(cria):
    env = dict(os.environ, CRIA_ZED_TEST_TOKEN=TOKEN)
    process = subprocess.Popen(
        [cria, "serve", "--listen", "127.0.0.1:0", "--model", MODEL, "--slots", "1", "--token-env", "CRIA_ZED_TEST_TOKEN"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    log = []
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    line = process.stdout.readline()
    if not line.startswith("cria serve:") or "http://" not in line:
        process.kill()
        time.sleep(0.5)
        raise Failure(f"cria serve did not start: {line!r}\n" + "".join(log[-20:]))
    address = line.split("http://", 1)[1].split()[0]
    return process, f"http://{address}", line.strip()


def main():
    cria = os.environ.get("CRIA_BIN")
    if not cria or not os.access(cria, os.X_OK):
        print(f"CRIA_BIN is not an executable: {cria!r}\n0 passed, 1 failed")
        return 1
    results = []

    def check(name, fn):
        t0 = time.monotonic()
        try:
            note = fn()
            results.append(True)
            print(f"ok      {name:<72} {time.monotonic() - t0:6.1f}s" + (f"\n  {note}" if note else ""))
        except (Failure, json.JSONDecodeError, OSError) as e:
            results.append(False)
            print(f"FAILED  {name:<72} {time.monotonic() - t0:6.1f}s\n{e}")

    try:
        process, base, banner = start_server(cria)
    except Failure as e:
        print(f"FAILED  cria serve starts\n{e}\n0 passed, 1 failed")
        return 1
    print(banner)
    url = base + "/v1/completions"
    prompt, suffix = zed_prompt()
    try:
        def markers_are_control_tokens():
            for marker in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"):
                status, text = post(url, json.dumps({"prompt": marker, "max_tokens": 1, "temperature": 0}).encode())
                data, _ = parse_like_zed(status, text)
                if data["usage"]["prompt_tokens"] != 1:
                    raise Failure(f"{marker} is {data['usage']['prompt_tokens']} prompt tokens, not one control token")

        def zed_request(stop, model):
            def run():
                body = zed_body(model, prompt, 64, stop)
                t0 = time.monotonic()
                status, text = post(url, body)
                ms = (time.monotonic() - t0) * 1000
                data, raw = parse_like_zed(status, text)
                completion = clean_like_zed(raw)
                if not completion.strip():
                    raise Failure(f"an empty suggestion for a blank line in a function body: {text}")
                for marker in END_MARKERS:
                    if marker in raw:
                        raise Failure(f"the answer carries {marker!r}: {raw!r}")
                if data["usage"]["prompt_tokens"] > len(prompt) // 2:
                    raise Failure(f"{data['usage']['prompt_tokens']} prompt tokens for {len(prompt)} characters: markers tokenized as text?")
                return (f"{ms:.0f} ms, {data['usage']['prompt_tokens']} prompt tokens ({data['usage']['prompt_tokens_details']['cached_tokens'] if 'prompt_tokens_details' in data['usage'] else '?'} cached), "
                        f"finish_reason {data['choices'][0].get('finish_reason')}: {completion!r}")
            return run

        def without_token():
            status, text = post(url, zed_body(MODEL, prompt, 64, STOP_NOW), token=None)
            if status != 401:
                raise Failure(f"without the key: HTTP {status}, expected 401: {text}")
            try:
                parse_like_zed(status, text)
            except Failure as e:
                return f"Zed would log: {e}"[:200]
            raise Failure("a 401 parsed as a completion")

        check("FIM markers in a text prompt reach the model as control tokens", markers_are_control_tokens)
        check("Zed's request (4 stop strings), prompt_format qwen: a suggestion", zed_request(STOP_NOW, MODEL))
        check("Zed's request (14 stop strings, earlier Zed), model `qwen2.5-coder`", zed_request(STOP_BEFORE, "qwen2.5-coder"))
        check("Zed's request without its key: 401, reported by Zed as an error", without_token)
        # For the record (Zed does not send it): OpenAI's `suffix` parameter.
        status, text = post(url, json.dumps({"prompt": "def f(", "suffix": ")\n", "max_tokens": 8}).encode())
        print(f"  (not Zed's: a request with OpenAI's `suffix` gets HTTP {status}: {text[:160]})")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
