#!/usr/bin/env python3
"""cria in an editor's real terminal UI: the editor in a tmux pane, driven by keys.

Why: the editors' other tests read the plugin's state over RPC (Neovim) or
not at all (Emacs), so they cannot see what a person sees: whether the
ghost text is drawn at all in a terminal without true colour, whether it
looks different from typed text, whether a warning fills the message line
at start. This test looks at the screen only.

How: a private tmux server (default-terminal `screen`, no COLORTERM, so
the editor has 8 colours and no true colour) runs the editor with cria's
plugin from this repository (editors/neovim, or editors/emacs/cria.el with
lsp-mode), its default options but for the model (SmolLM2, the fast test
model) and a generous latency budget for slow CI machines, and a status
line showing cria's state. It opens a copy of benches/data/ledger.py, waits
for `cria: ready` in the status line, checks that the message line carries
no warning or error, types a line with `send-keys`, waits for ghost text
after the typed text in `capture-pane -e` (the rest of that row and the
extra rows below it, all in one attribute that no typed character has),
presses Tab, saves the file and checks that it equals the original with
the typed text plus exactly the ghost text shown. SmolLM2's answer is not
predictable, so only these mechanics are asserted, never a string.

    CRIA_BIN=... python3 editors/tmux_ui.py neovim|emacs

Environment: CRIA_BIN (required); NVIM (default `nvim`) or EMACS (default
`emacs`); CRIA_EMACS_LOAD_PATH: directories for Emacs's `load-path`
(lsp-mode and its dependencies, colon-separated); CRIA_UI_MODEL (default
smollm2-135m-instruct); CRIA_UI_BUDGET_MS (default 30000);
CRIA_UI_MEASURE=N: after the test, type N more keys one at a time and
print the time from each key to its ghost text (to measure latency with a
release binary and the real model); with CRIA_UI_ENTER_AFTER_PAUSE_MS=P as
well, then type the rest of that line, pause P ms at its end, press Enter
and print the time to the new line's ghost text; with CRIA_UI_BLOCK_WATCH_S=S
as well, then type an opener line (CRIA_UI_BLOCK_OPENER) and Enter and watch the ghost text for S
seconds without a key, printing when it appears and each time it grows
(a block shown first by its first lines, then whole). Prints an `ok`/`FAILED` line and exits
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

EDITORS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(EDITORS)
SOURCE = os.path.join(REPO, "benches", "data", "ledger.py")
MARKER = "# keystroke-replay: cursor"
# What is typed on the marker's line (after clearing it).
TYPED = "        totals: dict[str, Decimal] = "
WIDTH, HEIGHT = 220, 50
MODEL = os.environ.get("CRIA_UI_MODEL", "smollm2-135m-instruct")
BUDGET = int(os.environ.get("CRIA_UI_BUDGET_MS", "30000"))
# Words that must not be on the message line.
BAD_MESSAGE = re.compile(r"(?i)(\berror|\bwarn(ing)?\b|\bE\d+:|\bfailed|\bexited|not found|\bunknown\b|press enter|\bcould not\b)")


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


def cells(row, state=None):
    """Splits a `capture-pane -e` row into cells: (character, attributes),
    the attributes as a sorted tuple of SGR settings (empty: the default).
    `state`: the SGR settings at the row's start, updated to those at its
    end (tmux carries them over from the row above; default: none)."""
    state = {} if state is None else state
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


def ghost_after_typed(tmux, x):
    """The ghost text's first line after the typed text (which ends at
    column x of the cursor's row), with its attributes, or None while there
    is none: the cells from x to the end of the row, all non-blank ones in
    one attribute set that is not the default."""
    _, y = tmux.cursor()
    rows = tmux.screen(escapes=True)
    if y >= len(rows):
        return None
    row = cells(rows[y])
    after = row[x:]
    text = text_of(after).rstrip()
    if not text.strip():
        return None
    attrs = {a for ch, a in after[: len(text)] if ch.strip()}
    if attrs == {()}:
        return None  # plain text: not drawn yet, or not a suggestion
    return {"x": x, "y": y, "text": text, "attrs": attrs, "row": row, "rows": rows}


def settled_ghost(tmux, x, timeout):
    """Waits for ghost text and for the screen to stop changing; returns it
    and when ghost text was first seen (`time.monotonic()`). The two differ
    while the status line still changes (`cria: warming NN%`)."""
    ghost = wait_for("ghost text after the typed text", lambda: ghost_after_typed(tmux, x), timeout, tmux)
    first_seen = time.monotonic()
    while True:
        time.sleep(0.3)
        again = ghost_after_typed(tmux, x)
        if again and again["rows"] == ghost["rows"] and again["y"] == ghost["y"]:
            return again, first_seen
        if again is None:
            ghost = wait_for("ghost text after the typed text", lambda: ghost_after_typed(tmux, x), timeout, tmux)
        else:
            ghost = again


class Neovim:
    """cria.nvim (editors/neovim) with `vim.g.cria`, the README's statusline."""

    name = "Neovim"

    def command(self, work, path, env):
        nvim = shutil.which(os.environ.get("NVIM", "nvim"))
        if not nvim:
            raise Failure("nvim not found")
        init = os.path.join(work, "init.lua")
        plugin = os.path.join(EDITORS, "neovim")
        with open(init, "w", encoding="utf-8") as f:
            f.write(
                f"vim.opt.rtp:prepend({plugin!r})\n"
                # The plugin's defaults (bin = "cria", found on PATH), but for
                # the model and a budget that slow CI machines can keep.
                f"vim.g.cria = {{ model = {MODEL!r}, settings = {{ latencyBudgetMs = {BUDGET} }} }}\n"
                # The statusline the README suggests.
                "vim.o.statusline = \"%f %= %{v:lua.require'cria.status'.statusline()} \"\n"
            )
        env["NVIM_LOG_FILE"] = os.path.join(work, "nvim.log")
        return f"exec {nvim} -n -i NONE -u {init} {path}"

    def start_typing(self, tmux, line):
        tmux.keys(f"{line}G")
        tmux.keys("z", "t", "0", "D")
        wait_for("the marker line cleared", lambda: MARKER not in "\n".join(tmux.screen()), 10, tmux)
        tmux.keys("A")
        wait_for("insert mode", lambda: "-- INSERT --" in tmux.screen()[-1], 10, tmux)

    def new_line(self, tmux):
        tmux.keys("o")
        wait_for("insert mode", lambda: "-- INSERT --" in tmux.screen()[-1], 10, tmux)

    def save(self, tmux):
        tmux.keys("Escape")
        tmux.keys(":w", "Enter")


class Emacs:
    """cria.el (editors/emacs) with lsp-mode, as its README sets it up."""

    name = "Emacs"

    def command(self, work, path, env):
        emacs = shutil.which(os.environ.get("EMACS", "emacs"))
        if not emacs:
            raise Failure("emacs not found")
        load_path = [d for d in os.environ.get("CRIA_EMACS_LOAD_PATH", "").split(":") if d]
        load_path.append(os.path.join(EDITORS, "emacs"))
        init = os.path.join(work, "init.el")

        def lisp(value):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        with open(init, "w", encoding="utf-8") as f:
            f.write(
                ";; -*- lexical-binding: t -*-\n"
                f"(setq load-path (append (list {' '.join(lisp(d) for d in load_path)}) load-path))\n"
                # What package.el does for installed packages: their autoloads.
                f"(dolist (dir (list {' '.join(lisp(d) for d in load_path)}))\n"
                "  (dolist (file (directory-files dir t \"-autoloads\\\\.el\\\\'\"))\n"
                "    (load file nil t)))\n"
                f"(setq lsp-session-file {lisp(os.path.join(work, 'lsp-session'))})\n"
                # Emacs's own native compilation of the Lisp packages loaded
                # (not cria's) would pop up a *Warnings* window.
                "(setq native-comp-async-report-warnings-errors 'silent)\n"
                # lsp-mode gives up on a request after 10 s; slow CI machines
                # answer within the budget.
                f"(setq lsp-response-timeout {BUDGET // 1000 + 10})\n"
                # No other language servers: only cria (an add-on client).
                "(setq lsp-client-packages nil)\n"
                "(require 'cria)\n"
                f"(setq cria-model {lisp(MODEL)})\n"
                f"(setq cria-settings '((latencyBudgetMs . {BUDGET})))\n"
                # The project's root is the file's folder (no prompt).
                f"(with-eval-after-load 'lsp-mode (lsp-workspace-folders-add {lisp(os.path.dirname(path))}))\n"
                "(add-hook 'python-mode-hook #'lsp-deferred)\n"
            )
        return f"exec {emacs} -nw -Q -l {init} {path}"

    def start_typing(self, tmux, line):
        tmux.keys("M-g", "g")
        tmux.type(str(line))
        tmux.keys("Enter")
        tmux.keys("C-a", "C-k")
        wait_for("the marker line cleared", lambda: MARKER not in "\n".join(tmux.screen()), 10, tmux)

    def new_line(self, tmux):
        tmux.keys("C-e", "Enter")

    def save(self, tmux):
        tmux.keys("C-x", "C-s")


EDITOR_PROFILES = {"neovim": Neovim, "emacs": Emacs}


def main(editor):
    cria = os.environ.get("CRIA_BIN")
    if not cria or not os.access(cria, os.X_OK):
        raise Failure(f"CRIA_BIN is not an executable: {cria!r}")
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
        project = os.path.join(work, "project")
        os.mkdir(project)
        path = os.path.join(project, "ledger.py")
        shutil.copyfile(SOURCE, path)
        bindir = os.path.join(work, "bin")
        os.mkdir(bindir)
        os.symlink(os.path.abspath(cria), os.path.join(bindir, "cria"))
        env = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "TMUX", "TMUX_PANE", "VIMINIT", "MYVIMRC", "EMACSLOADPATH")}
        for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env[name] = os.path.join(work, name.lower())
        env["HOME"] = os.path.join(work, "home")
        os.mkdir(env["HOME"])
        # The models stay where they are.
        env["CRIA_HOME"] = os.environ.get("CRIA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "cria")
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        command = editor.command(work, path, env)

        started = time.monotonic()
        tmux = Tmux(command, env)
        term = tmux.run("show-options", "-g", "-v", "default-terminal").strip()
        wait_for(
            "`cria: ready` in the status line",
            lambda: any("cria: ready" in row or "cria: error" in row for row in tmux.screen()),
            180, tmux, interval=0.05,
        )
        screen = tmux.screen()
        if any("cria: error" in row for row in screen):
            raise Failure("the status line says cria: error:\n" + "\n".join(screen))
        ready_s = time.monotonic() - started
        problem = message_line_problem(screen)
        if problem:
            raise Failure(f"the message line at start shows: {problem!r}")
        print(f"  {editor.name}, TERM={term}; ready after {ready_s:.1f} s; message line: {screen[-1].strip()!r}")

        # To the marker line; clear it and type.
        editor.start_typing(tmux, edit + 1)
        for ch in TYPED:
            tmux.type(ch)
            time.sleep(0.03)
        last_key = time.monotonic()
        x = len(TYPED)
        ghost, seen_at = settled_ghost(tmux, x, 120)
        first_seen, settled = seen_at - last_key, time.monotonic() - last_key
        y, rows, row = ghost["y"], ghost["rows"], ghost["row"]
        typed_on_screen = text_of(row[:x])
        if typed_on_screen != TYPED:
            raise Failure(f"the cursor's row starts {typed_on_screen!r}, typed {TYPED!r}")
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

        # Extra rows: those between the cursor's row and the next buffer line
        # (after the file's blank lines there).
        plain = [text_of(cells(r)) for r in rows]
        want = original[following].expandtabs(8).rstrip()
        below = [r for r in range(y + 1, len(plain)) if plain[r].rstrip() == want]
        if not below:
            raise Failure(f"the line after the edit ({want!r}) is not on the screen:\n" + "\n".join(plain))
        extra = below[0] - y - 1 - blanks
        if extra < 0:
            raise Failure("fewer rows than blank lines between the cursor and the next line")
        ghost_lines = [ghost["text"]]
        for r in range(y + 1, y + 1 + extra):
            row_cells = cells(rows[r])
            line = text_of(row_cells).rstrip()
            wrong = {a for ch, a in row_cells[: len(line)] if ch.strip()} - {ghost_attrs}
            if wrong:
                raise Failure(f"screen row {r} below the cursor is not all ghost text: {line!r} {wrong}")
            ghost_lines.append(line)
        for r in range(y + 1 + extra, below[0]):
            if plain[r].strip():
                raise Failure(f"screen row {r} should be one of the file's blank lines: {plain[r]!r}")
        print(f"  ghost text after {first_seen * 1000:.0f} ms (screen settled after {settled * 1000:.0f} ms), {len(ghost_lines)} line(s), attributes {dict(ghost_attrs)}: {ghost_lines!r}")

        before = os.stat(path).st_mtime_ns
        tmux.keys("Tab")
        wait_for(
            "the suggestion inserted",
            lambda: text_of(cells(tmux.screen(escapes=True)[y])).rstrip() == (TYPED + ghost_lines[0]).rstrip()
            and not ghost_after_typed(tmux, len((TYPED + ghost_lines[0]).rstrip())),
            10, tmux,
        )
        editor.save(tmux)
        wait_for("the file written", lambda: os.stat(path).st_mtime_ns != before, 10, tmux)
        time.sleep(0.2)
        written = open(path, encoding="utf-8").read().split("\n")
        expected = original[:edit] + [TYPED + ghost_lines[0]] + ghost_lines[1:] + original[edit + 1:]
        got = [line.expandtabs(8).rstrip() for line in written]
        want_lines = [line.rstrip() for line in expected]
        if got != want_lines:
            import difflib

            diff = "\n".join(difflib.unified_diff(want_lines, got, "typed + ghost shown", "written", lineterm="", n=1))
            raise Failure("the buffer is not the typed text plus the ghost text shown:\n" + diff)
        screen = tmux.screen()
        problem = message_line_problem(screen)
        if problem:
            raise Failure(f"the message line after saving shows: {problem!r}")

        measure = int(os.environ.get("CRIA_UI_MEASURE", "0"))
        if measure:
            measure_latency(tmux, editor, measure)
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


def measure_latency(tmux, editor, count):
    """Types `count` keys on a fresh line, one at a time, each after the
    previous key's ghost text appeared (or 30 s); prints key-to-ghost times."""
    editor.new_line(tmux)
    line = "        spent = sum(tx.amount for tx in self.transactions() if tx.amount < 0)"
    # Start from the indentation the editor put there.
    time.sleep(0.5)
    indent = tmux.cursor()[0]
    if indent < 8:
        tmux.type(" " * (8 - indent))
    times = []
    for ch in line[8 : 8 + count]:
        x = tmux.cursor()[0]
        tmux.type(ch)
        t0 = time.monotonic()
        try:
            wait_for("the cursor to move", lambda: tmux.cursor()[0] > x, 10, tmux, interval=0.005)
            wait_for("ghost text", lambda: ghost_after_typed(tmux, x + 1), 30, tmux, interval=0.005)
            times.append((time.monotonic() - t0) * 1000)
        except Failure:
            times.append(float("nan"))
    ok = [t for t in times if t == t]
    print(f"  key to ghost text (ms): {[round(t) if t == t else None for t in times]}")
    if ok:
        print(f"  median {statistics.median(ok):.0f} ms, max {max(ok):.0f} ms, {len(ok)}/{len(times)} keys got ghost text")
    pause_ms = int(os.environ.get("CRIA_UI_ENTER_AFTER_PAUSE_MS", "0"))
    if pause_ms:
        # The rest of the line, a pause at its end, then Enter: how long the
        # new line waits for its ghost text.
        tmux.type(line[8 + count :])
        wait_for("the line typed", lambda: tmux.cursor()[0] >= len(line), 10, tmux)
        time.sleep(pause_ms / 1000)
        _, y = tmux.cursor()
        tmux.keys("Enter")
        t0 = time.monotonic()
        wait_for("the new line", lambda: tmux.cursor()[1] == y + 1, 10, tmux, interval=0.005)
        x = tmux.cursor()[0]
        ghost = wait_for("ghost text on the new line", lambda: ghost_after_typed(tmux, x), 30, tmux, interval=0.005)
        print(f"  Enter after a {pause_ms} ms pause at the line's end: ghost text after {(time.monotonic() - t0) * 1000:.0f} ms: {ghost['text']!r}")
    block_s = float(os.environ.get("CRIA_UI_BLOCK_WATCH_S", "0"))
    if block_s:
        measure_block(tmux, block_s)


def ghost_rows(tmux, x):
    """The ghost text's rows: its first line after column x of the cursor's
    row, then each following row whose non-blank cells all carry the first
    line's attributes (a block's next lines, drawn below the cursor)."""
    first = ghost_after_typed(tmux, x)
    if first is None:
        return []
    found = [first["text"]]
    state = {}
    for raw in first["rows"][: first["y"] + 1]:
        cells(raw, state)
    for raw in first["rows"][first["y"] + 1 :]:
        row = cells(raw, state)
        text = text_of(row).rstrip()
        attrs = {a for ch, a in row if ch.strip()}
        if not text.strip() or attrs != first["attrs"]:
            break
        found.append(text)
    return found


def measure_block(tmux, watch_s):
    """Types an opener line (`for ...:`) and Enter without a pause, as a user
    starting a block, then watches the screen for `watch_s` seconds without
    a key: when ghost text appears on the new line and how many rows it
    has, and each time it grows (a block whose first lines were shown
    while the rest was written, replaced by the whole without a keystroke)."""
    tmux.keys("Escape")
    time.sleep(0.3)
    tmux.keys("o")
    time.sleep(0.5)
    indent = tmux.cursor()[0]
    opener = os.environ.get("CRIA_UI_BLOCK_OPENER", "for tx in self.transactions():")
    if indent < 8:
        tmux.type(" " * (8 - indent))
    tmux.type(opener)
    wait_for("the opener typed", lambda: tmux.cursor()[0] >= 8 + len(opener), 10, tmux)
    _, y = tmux.cursor()
    tmux.keys("Enter")
    t0 = time.monotonic()
    wait_for("the new line", lambda: tmux.cursor()[1] == y + 1, 10, tmux, interval=0.005)
    x = tmux.cursor()[0]
    seen = []
    while time.monotonic() - t0 < watch_s:
        rows = ghost_rows(tmux, x)
        if rows and (not seen or rows != seen[-1][1]):
            seen.append(((time.monotonic() - t0) * 1000, rows))
        time.sleep(0.01)
    if not seen:
        print(f"  block after an opener: no ghost text in {watch_s:.0f} s")
    for ms, rows in seen:
        print(f"  block after an opener: {len(rows)} ghost row(s) after {ms:.0f} ms: {rows!r}")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in EDITOR_PROFILES:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(EDITOR_PROFILES)}")
    profile = EDITOR_PROFILES[sys.argv[1]]()
    t0 = time.monotonic()
    name = f"tmux: {profile.name}'s real UI, ghost text in its own colour, <Tab> inserts exactly it"
    try:
        main(profile)
    except Failure as e:
        print(f"FAILED  {name} {time.monotonic() - t0:6.1f}s\n{e}")
        sys.exit(1)
    print(f"ok      {name} {time.monotonic() - t0:6.1f}s")
