#!/usr/bin/env python3
"""cria.nvim in the real terminal UI: Neovim in a tmux pane, driven by keys.

Why: the headless tests (tests/run.lua) read the plugin's state over RPC,
so they cannot see what a person sees: whether the ghost text is drawn at
all in a terminal without true colour, whether it looks different from
typed text, whether a warning fills the message line at start. This test
looks at the screen only.

How: a private tmux server (default-terminal `screen`, no COLORTERM, so
Neovim has 8 colours and no 'termguicolors') runs Neovim with the plugin
from this folder, its default options but for the model (SmolLM2, the
fast test model), a generous latency budget for slow CI machines, and the
README's statusline. It opens a copy of benches/data/ledger.py, waits for
`cria: ready` in the statusline, checks that the message line carries no
warning or error, types a line with `send-keys`, waits for ghost text at
the cursor in `capture-pane -e` (the cells after the cursor and the
virtual lines below it, all in one attribute that no typed character
has), presses Tab, writes the file and checks that it equals the original
with the typed text plus exactly the ghost text shown. SmolLM2's answer is
not predictable, so only these mechanics are asserted, never a string.

    CRIA_BIN=... NVIM=... python3 tests/tmux_ui.py

Environment: CRIA_BIN (required), NVIM (default `nvim`), CRIA_UI_MODEL
(default smollm2-135m-instruct), CRIA_UI_BUDGET_MS (default 30000),
CRIA_UI_MEASURE=N: after the test, type N more keys one at a time and
print the time from each key to its ghost text (for measuring latency with
a release binary and the real model). Prints `ok`/`FAILED` lines and exits
non-zero on failure; never skips.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PLUGIN))
SOURCE = os.path.join(REPO, "benches", "data", "ledger.py")
MARKER = "# keystroke-replay: cursor"
# What is typed on the marker's line (after clearing it).
TYPED = "        totals: dict[str, Decimal] = "
WIDTH, HEIGHT = 220, 50
MODEL = os.environ.get("CRIA_UI_MODEL", "smollm2-135m-instruct")
BUDGET = int(os.environ.get("CRIA_UI_BUDGET_MS", "30000"))
# Words that must not be on the message line.
BAD_MESSAGE = re.compile(r"(?i)\b(error|warn(ing)?|E\d+:|failed|exited|not found|unknown|press enter)\b")


class Failure(Exception):
    pass


class Tmux:
    """A private tmux server with one pane running `command`."""

    def __init__(self, command, env):
        self.socket = f"cria-ui-{os.getpid()}"
        self.env = env
        self.run(
            "start-server", ";",
            "set-option", "-g", "default-terminal", "screen", ";",
            "set-option", "-g", "escape-time", "0", ";",
            "new-session", "-d", "-s", "ui", "-x", str(WIDTH), "-y", str(HEIGHT), command,
        )

    def run(self, *args, check=True):
        result = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env, capture_output=True, text=True, timeout=30,
        )
        if check and result.returncode != 0:
            raise Failure(f"tmux {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def keys(self, *keys):
        self.run("send-keys", "-t", "ui", *keys)

    def type(self, text):
        self.run("send-keys", "-t", "ui", "-l", text)

    def screen(self, escapes=False):
        args = ["capture-pane", "-p", "-t", "ui"]
        if escapes:
            args.insert(1, "-e")
        return self.run(*args).split("\n")[:HEIGHT]

    def cursor(self):
        x, y = self.run("display-message", "-p", "-t", "ui", "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def kill(self):
        self.run("kill-server", check=False)


SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def cells(row):
    """Splits a `capture-pane -e` row into cells: (character, attributes),
    the attributes as a sorted tuple of SGR settings (empty: the default)."""
    state = {}
    out = []
    pos = 0
    for match in list(SGR.finditer(row)) + [None]:
        end = match.start() if match else len(row)
        for ch in row[pos:end]:
            attrs = tuple(sorted(state.items()))
            out.append((ch, attrs))
            if unicodedata.east_asian_width(ch) in ("W", "F"):
                out.append(("", attrs))
        if not match:
            break
        pos = match.end()
        apply_sgr(state, match.group(1))
    return out


def apply_sgr(state, params):
    codes = [int(c) if c.isdigit() else 0 for c in re.split(r"[;:]", params)] if params else [0]
    i = 0
    flags = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 5: "blink", 7: "reverse", 9: "strike"}
    clears = {22: ("bold", "dim"), 23: ("italic",), 24: ("underline",), 25: ("blink",), 27: ("reverse",), 29: ("strike",)}
    while i < len(codes):
        c = codes[i]
        if c == 0:
            state.clear()
        elif c in flags:
            state[flags[c]] = True
        elif c in clears:
            for name in clears[c]:
                state.pop(name, None)
        elif 30 <= c <= 37 or 90 <= c <= 97:
            state["fg"] = str(c)
        elif 40 <= c <= 47 or 100 <= c <= 107:
            state["bg"] = str(c)
        elif c == 39:
            state.pop("fg", None)
        elif c == 49:
            state.pop("bg", None)
        elif c in (38, 48) and i + 1 < len(codes):
            key = "fg" if c == 38 else "bg"
            if codes[i + 1] == 5 and i + 2 < len(codes):
                state[key] = f"5;{codes[i + 2]}"
                i += 2
            elif codes[i + 1] == 2 and i + 4 < len(codes):
                state[key] = "2;" + ";".join(map(str, codes[i + 2:i + 5]))
                i += 4
        i += 1


def text_of(cell_list):
    return "".join(ch for ch, _ in cell_list)


def wait_for(what, predicate, timeout, tmux, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}; screen:\n" + "\n".join(tmux.screen()))
        time.sleep(interval)


def message_line_problem(screen):
    """The message line (last row) if it shows a warning or an error."""
    last = screen[-1].strip() if screen else ""
    if BAD_MESSAGE.search(last):
        return last
    return None


def ghost_at_cursor(tmux, typed_attrs_row=None):
    """The ghost text's first line at the cursor, with its attributes, or
    None while there is none: the cells from the cursor to the end of the
    row, all non-blank ones in one attribute set that is not the default."""
    x, y = tmux.cursor()
    rows = tmux.screen(escapes=True)
    if y >= len(rows):
        return None
    row = cells(rows[y])
    after = row[x:]
    text = text_of(after).rstrip()
    if not text.strip():
        return None
    attrs = {a for ch, a in after[: len(text)] if ch.strip()}
    return {"x": x, "y": y, "text": text, "attrs": attrs, "row": row, "rows": rows}


def settled_ghost(tmux, timeout):
    """Waits for ghost text and for the screen to stop changing."""
    ghost = wait_for("ghost text at the cursor", lambda: ghost_at_cursor(tmux), timeout, tmux)
    while True:
        time.sleep(0.3)
        again = ghost_at_cursor(tmux)
        if again and again["rows"] == ghost["rows"] and (again["x"], again["y"]) == (ghost["x"], ghost["y"]):
            return again
        if again is None:
            ghost = wait_for("ghost text at the cursor", lambda: ghost_at_cursor(tmux), timeout, tmux)
        else:
            ghost = again


def main():
    cria = os.environ.get("CRIA_BIN")
    if not cria or not os.access(cria, os.X_OK):
        raise Failure(f"CRIA_BIN is not an executable: {cria!r}")
    nvim = shutil.which(os.environ.get("NVIM", "nvim"))
    if not nvim:
        raise Failure("nvim not found")
    if not shutil.which("tmux"):
        raise Failure("tmux not found")

    original = open(SOURCE, encoding="utf-8").read().split("\n")
    edit = next(i for i, line in enumerate(original) if line.strip() == MARKER)
    # The next non-blank line after the edited one, and the blank ones before it.
    following = next(i for i in range(edit + 1, len(original)) if original[i].strip())
    blanks = following - edit - 1

    work = tempfile.mkdtemp(prefix="cria-ui-")
    tmux = None
    try:
        path = os.path.join(work, "ledger.py")
        shutil.copyfile(SOURCE, path)
        bindir = os.path.join(work, "bin")
        os.mkdir(bindir)
        os.symlink(cria, os.path.join(bindir, "cria"))
        init = os.path.join(work, "init.lua")
        with open(init, "w", encoding="utf-8") as f:
            f.write(
                f"vim.opt.rtp:prepend({PLUGIN!r})\n"
                # The plugin's defaults (bin = "cria", found on PATH), but for
                # the model and a budget that slow CI machines can keep.
                f"vim.g.cria = {{ model = {MODEL!r}, settings = {{ latencyBudgetMs = {BUDGET} }} }}\n"
                # The statusline the README suggests.
                "vim.o.statusline = \"%f %= %{v:lua.require'cria.status'.statusline()} \"\n"
            )
        env = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "TMUX", "TMUX_PANE", "NVIM", "VIMINIT", "MYVIMRC")}
        for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env[name] = os.path.join(work, name.lower())
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env["NVIM_LOG_FILE"] = os.path.join(work, "nvim.log")
        command = f"exec {nvim} -n -i NONE -u {init} {path}"

        started = time.monotonic()
        tmux = Tmux(command, env)
        term = tmux.run("show-options", "-g", "-v", "default-terminal").strip()
        ready = wait_for(
            "`cria: ready` in the statusline",
            lambda: any("cria: ready" in row or "cria: error" in row for row in tmux.screen()),
            180, tmux, interval=0.05,
        )
        screen = tmux.screen()
        if any("cria: error" in row for row in screen):
            raise Failure("the statusline says cria: error:\n" + "\n".join(screen))
        ready_s = time.monotonic() - started
        problem = message_line_problem(screen)
        if problem:
            raise Failure(f"the message line at start shows: {problem!r}")
        print(f"  TERM={term}; ready after {ready_s:.1f} s; message line: {screen[-1].strip()!r}")

        # To the marker line, at the top of the window; clear it and type.
        tmux.keys(f"{edit + 1}G")
        tmux.keys("z", "t", "0", "D")
        wait_for("the marker line cleared", lambda: MARKER not in "\n".join(tmux.screen()), 10, tmux)
        tmux.keys("A")
        wait_for("insert mode", lambda: "-- INSERT --" in tmux.screen()[-1], 10, tmux)
        for ch in TYPED:
            tmux.type(ch)
            time.sleep(0.03)
        last_key = time.monotonic()
        ghost = settled_ghost(tmux, 120)
        first_seen = time.monotonic() - last_key
        x, y, rows = ghost["x"], ghost["y"], ghost["rows"]
        row = ghost["row"]
        typed_on_screen = text_of(row[:x])
        if typed_on_screen != TYPED:
            raise Failure(f"the cursor row before the cursor is {typed_on_screen!r}, typed {TYPED!r}")
        if len(ghost["attrs"]) != 1:
            raise Failure(f"the ghost text is drawn in {len(ghost['attrs'])} attribute sets: {ghost['attrs']}")
        (ghost_attrs,) = ghost["attrs"]
        if not ghost_attrs:
            raise Failure("the ghost text is drawn in the default attributes, like plain text")
        typed_attrs = {a for ch, a in row[:x] if ch.strip()}
        if ghost_attrs in typed_attrs:
            raise Failure(f"the ghost text's attributes {ghost_attrs} are also those of typed text")
        if len(text_of(row).rstrip()) >= WIDTH:
            raise Failure("the ghost text's first line reaches the pane's edge (cut): widen the pane")

        # Virtual lines: the rows between the cursor row and the next buffer
        # line (after the file's blank lines there).
        plain = [text_of(cells(r)) for r in rows]
        want = original[following].expandtabs(8).rstrip()
        below = [r for r in range(y + 1, len(plain)) if plain[r].rstrip() == want]
        if not below:
            raise Failure(f"the line after the edit ({want!r}) is not on the screen:\n" + "\n".join(plain))
        virtual = below[0] - y - 1 - blanks
        if virtual < 0:
            raise Failure("fewer rows than blank lines between the cursor and the next line")
        ghost_lines = [ghost["text"]]
        for r in range(y + 1, y + 1 + virtual):
            row_cells = cells(rows[r])
            line = text_of(row_cells).rstrip()
            wrong = {a for ch, a in row_cells[: len(line)] if ch.strip()} - {ghost_attrs}
            if wrong:
                raise Failure(f"screen row {r} below the cursor is not all ghost text: {line!r} {wrong}")
            ghost_lines.append(line)
        for r in range(y + 1 + virtual, below[0]):
            if plain[r].strip():
                raise Failure(f"screen row {r} should be one of the file's blank lines: {plain[r]!r}")
        print(f"  ghost text after {first_seen * 1000:.0f} ms, {len(ghost_lines)} line(s), attributes {dict(ghost_attrs)}: {ghost_lines!r}")

        before = os.stat(path).st_mtime_ns
        tmux.keys("Tab")
        wait_for("the suggestion inserted", lambda: text_of(cells(tmux.screen(escapes=True)[y])).rstrip() == (TYPED + ghost_lines[0]).rstrip(), 10, tmux)
        tmux.keys("Escape")
        tmux.keys(":w", "Enter")
        wait_for("the file written", lambda: os.stat(path).st_mtime_ns != before, 10, tmux)
        written = open(path, encoding="utf-8").read().split("\n")
        expected = original[:edit] + [TYPED + ghost_lines[0]] + ghost_lines[1:] + original[edit + 1:]
        got = [line.expandtabs(8).rstrip() for line in written]
        want_lines = [line.rstrip() for line in expected]
        if got != want_lines:
            import difflib

            diff = "\n".join(difflib.unified_diff(want_lines, got, "typed + ghost shown", "written", lineterm="", n=1))
            raise Failure("the buffer is not the typed text plus the ghost text shown:\n" + diff)
        time.sleep(0.3)
        screen = tmux.screen()
        problem = message_line_problem(screen)
        if problem:
            raise Failure(f"the message line after writing shows: {problem!r}")

        measure = int(os.environ.get("CRIA_UI_MEASURE", "0"))
        if measure:
            measure_latency(tmux, measure)
    except Failure:
        if tmux:
            try:
                print("  last screen:\n    " + "\n    ".join(tmux.screen()))
            except Failure:
                pass
        raise
    finally:
        if tmux:
            tmux.kill()
        shutil.rmtree(work, ignore_errors=True)


def measure_latency(tmux, count):
    """Types `count` keys on a fresh line, one at a time, each after the
    previous key's ghost text appeared; prints key-to-ghost times."""
    tmux.keys("o")
    wait_for("insert mode", lambda: "-- INSERT --" in tmux.screen()[-1], 10, tmux)
    text = "        spent = sum(tx.amount for tx in self.transactions() if tx.amount < 0)"[: 8 + count]
    times = []
    for ch in text[8:]:
        x = tmux.cursor()[0]
        tmux.type(ch)
        t0 = time.monotonic()
        try:
            wait_for("the cursor to move", lambda: tmux.cursor()[0] > x, 10, tmux, interval=0.005)
            wait_for("ghost text", lambda: ghost_at_cursor(tmux), 30, tmux, interval=0.005)
            times.append((time.monotonic() - t0) * 1000)
        except Failure:
            times.append(float("nan"))
    ok = [t for t in times if t == t]
    print(f"  key to ghost text (ms): {[round(t) for t in times]}")
    if ok:
        print(f"  median {statistics.median(ok):.0f} ms, max {max(ok):.0f} ms, {len(ok)}/{len(times)} keys got ghost text")


if __name__ == "__main__":
    t0 = time.monotonic()
    name = "tmux: real UI, ghost text drawn in its own colour, <Tab> inserts exactly it"
    try:
        main()
    except Failure as e:
        print(f"FAILED  {name} {time.monotonic() - t0:6.1f}s\n{e}")
        sys.exit(1)
    print(f"ok      {name} {time.monotonic() - t0:6.1f}s")
