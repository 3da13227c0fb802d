"""Real-code completion sets for benches/humaneval_infill.py (standard library only).

Two sets built from source files already on the machine, picked by a seed:

``fresh``: a real line is emptied down to its indentation, the cursor sits at
the end of that indentation (as after Enter with auto-indent), the rest of the
file follows.  The truth is the whole line.

``mid``: the cursor is placed inside a real line as a user typing it has it:
the line's text up to the cursor is present, the rest of that line is absent
(the line ends at the cursor), the following lines are present.  Three cursor
kinds: ``ident`` (after the first 1-3 characters of an identifier), ``space``
(right after a space inside the line) and ``op`` (right after an operator,
``(``, ``[`` or ``.``).  The truth is the rest of the line.

Scores (``score_line``): exact match of the cursor's line after the
suggestion is accepted against the true line (trailing whitespace stripped),
characters accepted (common prefix of the resulting line and the true line,
minus what was already typed), split words and doubled spaces (see README).
"""

from __future__ import annotations

import glob
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = ("python", "rust", "javascript", "c")
LANGUAGE_IDS = {"python": "python", "rust": "rust", "javascript": "javascript", "c": "c"}
EXTENSIONS = {"python": (".py",), "rust": (".rs",), "javascript": (".js", ".mjs"), "c": (".c",)}
COMMENT_STARTS = {
    "python": ("#", '"""', "'''"),
    "rust": ("//", "/*", "*", "*/"),
    "javascript": ("//", "/*", "*", "*/"),
    "c": ("//", "/*", "*", "*/"),
}
KINDS = ("ident", "space", "op")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATOR_CHARS = set("=+-*/%<>!&|^~(.[")


def roots() -> dict[str, list[str]]:
    """Where each language's files come from (fixed folders on this machine)."""
    cargo = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/"))
    llama = [p for p in glob.glob("/root/.cache/cria/llama.cpp/*/src") if os.path.isdir(p)]
    return {
        "python": ["/usr/lib/python3.11"],
        "rust": cargo,
        "javascript": cargo + llama,
        "c": cargo + llama,
    }


SKIP_DIRS = {"site-packages", "dist-packages", "node_modules", ".git", "__pycache__", "target"}


def candidate_files(language: str) -> list[str]:
    """Every file of the language under its roots: 1 KiB to 200 KiB, UTF-8,
    no CR line ends, no line over 400 characters (minified or generated),
    not a *.min.js.  Sorted, so a seed picks the same files everywhere."""
    files = []
    for root in roots()[language]:
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in names:
                if name.endswith(EXTENSIONS[language]) and not name.endswith(".min.js"):
                    files.append(os.path.join(folder, name))
    out = []
    for f in sorted(set(files)):
        try:
            size = os.path.getsize(f)
        except OSError:
            continue
        if 1024 <= size <= 200 * 1024:
            out.append(f)
    return out


def read_lines(path: str) -> list[str] | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "\r" in text:
        return None
    lines = text.split("\n")
    if any(len(l) > 400 for l in lines):
        return None
    return lines


def good_line(line: str, language: str) -> bool:
    """A real line: 8-120 characters (trailing whitespace stripped), not
    blank, not a comment only."""
    s = line.rstrip()
    body = s.strip()
    if not (8 <= len(s) <= 120) or not body:
        return False
    if body.startswith(COMMENT_STARTS[language]):
        return False
    return True


def docstring_lines(lines: list[str]) -> set[int]:
    """Python lines inside (or opening or closing) a triple-quoted string,
    by counting the triple quotes on each line (good enough to keep prose out)."""
    out = set()
    inside = False
    for i, line in enumerate(lines):
        n = line.count('"""') + line.count("'''")
        if inside or n:
            out.add(i)
        if n % 2:
            inside = not inside
    return out


@dataclass
class CodeCase:
    set: str
    case_id: str
    language: str
    kind: str  # fresh: "fresh"; mid: ident / space / op
    path: str
    text: str  # the document
    cursor: int  # byte offset of the cursor in text
    line_index: int
    typed: str  # the cursor line's text before the cursor
    truth: str  # the whole true line
    identifiers: frozenset  # identifiers of the original file (for split words)


def _document(lines: list[str], k: int, typed: str) -> tuple[str, int]:
    before = "\n".join(lines[:k])
    before = before + "\n" if k > 0 else ""
    text = before + typed + "\n" + "\n".join(lines[k + 1:])
    return text, len((before + typed).encode("utf-8"))


def mid_cursors(line: str) -> dict[str, list[int]]:
    """Candidate cursor columns in a line, per kind; each leaves at least one
    non-blank character of the line after the cursor."""
    indent = len(line) - len(line.lstrip())
    s = line.rstrip()
    out = {k: [] for k in KINDS}
    for m in IDENT.finditer(s):
        if m.start() < indent:
            continue
        n = m.end() - m.start()
        for k in range(1, min(3, n - 1) + 1):
            out["ident"].append(m.start() + k)
    for i in range(indent + 1, len(s)):
        if s[i - 1] == " " and s[i] != " ":
            out["space"].append(i)
        if s[i - 1] in OPERATOR_CHARS and s[i] not in " \t":
            # inside a word like `a.b` or after `(`: the previous char is an operator
            out["op"].append(i)
    return out


def build_set(name: str, seed: int, per_language: int, languages=LANGUAGES) -> list[CodeCase]:
    """`per_language` cases per language.  Each case comes from a file drawn
    at random (with a seeded generator per set, seed and language), a line
    drawn at random among its good lines and, for ``mid``, a cursor kind in
    turn (ident, space, op) and a column drawn among that kind's candidates;
    a (file, line) pair is used at most once."""
    cases = []
    for language in languages:
        files = candidate_files(language)
        if not files:
            continue
        rng = random.Random(f"{name}/{seed}/{language}")
        used = set()
        cache: dict[str, list[str] | None] = {}
        attempts = 0
        while sum(1 for c in cases if c.language == language) < per_language and attempts < per_language * 50:
            attempts += 1
            path = rng.choice(files)
            if path not in cache:
                cache[path] = read_lines(path)
            lines = cache[path]
            if not lines:
                continue
            inside = docstring_lines(lines) if language == "python" else set()
            good = [i for i, l in enumerate(lines) if i not in inside and good_line(l, language)]
            if not good:
                continue
            k = rng.choice(good)
            if (path, k) in used:
                continue
            line = lines[k].rstrip()
            n = sum(1 for c in cases if c.language == language)
            if name == "fresh":
                kind = "fresh"
                typed = line[: len(line) - len(line.lstrip())]
            else:
                kind = KINDS[n % len(KINDS)]
                cols = mid_cursors(line)[kind]
                if not cols:
                    continue
                typed = line[: rng.choice(cols)]
            used.add((path, k))
            text, cursor = _document(lines, k, typed)
            idents = frozenset(IDENT.findall("\n".join(lines)))
            cases.append(CodeCase(name, f"{name}/{language}/{n}", language, kind, path, text, cursor, k, typed, line, idents))
    # Languages take turns (python 0, rust 0, ..., python 1, ...), so a run cut short has as many of each.
    return sorted(cases, key=lambda c: (int(c.case_id.rsplit("/", 1)[1]), languages.index(c.language)))


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def score_line(case: CodeCase, new_line: str) -> dict:
    """Scores of the cursor line after the suggestion is accepted."""
    exact = new_line.rstrip() == case.truth.rstrip()
    typed = case.typed
    accepted = max(0, common_prefix(new_line, case.truth) - len(typed))
    suggestion = new_line[len(typed):] if new_line.startswith(typed) else new_line
    split = False
    doubled = False
    if suggestion.strip():
        if case.kind == "ident":
            pm = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", typed)
            partial = pm.group(0) if pm else ""
            m = re.match(r"[A-Za-z0-9_]*", suggestion)
            word = partial + (m.group(0) if m else "")
            rest = case.truth[len(typed):]
            tm = re.match(r"[A-Za-z0-9_]*", rest)
            true_word = partial + (tm.group(0) if tm else "")
            split = word != true_word and word not in case.identifiers
        if typed.endswith((" ", "\t")) and suggestion[:1] in (" ", "\t") and typed.strip():
            doubled = True
    return {"exact": exact, "accepted": accepted, "split": split, "doubled": doubled, "line": new_line}
