#!/usr/bin/env python3
"""Structure checks over a Rust source tree (default: src/).

  (a) The import graph between top-level modules (`src/X.rs` or `src/X/`; `lib.rs` and
      `main.rs` are not modules), from `crate::` paths (and `super::` paths that climb to the
      crate root): every cycle (strongly connected component of more than one module) is
      printed, and fails the check.
  (b) Every `fn` longer than MAX_FN lines (from the line of `fn` to the line of its closing
      brace) fails the check.
  (c) `main.rs` longer than MAX_MAIN lines fails the check.

Code under `#[cfg(test)]` (items, and files declared by a `#[cfg(test)] mod x;`) and comments
are ignored; braces and paths inside string and character literals do not count.

Usage: python3 scripts/check-structure.py [SRC_DIR]     exit 0 = clean, 1 = findings, 2 = usage
"""

import os
import re
import sys

MAX_FN = 150
MAX_MAIN = 300


# --- Lexing: blank out comments and literal contents, keep line structure -------------------


def mask(text):
    """`text` with comments and the contents of string/char literals replaced by spaces
    (newlines kept, so offsets and line numbers are unchanged). Quotes stay, so `"{"` becomes
    `" "`: no brace, no path, no `fn` survives from inside a literal."""
    out = list(text)
    n = len(text)
    i = 0

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":  # line comment (doc comments too)
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and nxt == "*":  # block comment, nested
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and not _ident_char(text, i - 1):
            # Raw strings r"..", r#".."#, br#".."#; byte strings b".."; byte chars b'x'.
            m = re.compile(r'(br|r)(#*)"').match(text, i)
            if m:
                close = '"' + m.group(2)
                j = text.find(close, m.end())
                j = n if j < 0 else j
                blank(m.end(), j)
                i = j + len(close)
            elif c == "b" and nxt in "\"'":
                i = _quoted(text, i + 1, blank)
            else:
                i = _skip_ident(text, i)
        elif c == '"':
            i = _quoted(text, i, blank)
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}', '{') or a lifetime/label ('a, 'static).
            m = re.compile(r"'(\\(u\{[0-9a-fA-F_]*\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'").match(text, i)
            if m:
                blank(i + 1, m.end() - 1)
                i = m.end()
            else:
                i += 1
        elif _ident_start(c):
            i = _skip_ident(text, i)
        else:
            i += 1
    return "".join(out)


def _ident_start(c):
    return c.isalpha() or c == "_"


def _ident_char(text, i):
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


def _skip_ident(text, i):
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    return max(j, i + 1)


def _quoted(text, i, blank):
    """Skip the literal whose opening quote is at `i`; blank its contents."""
    q = text[i]
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == q:
            break
        j += 1
    blank(i + 1, min(j, len(text)))
    return j + 1


def matching_brace(masked, open_at):
    depth = 0
    for j in range(open_at, len(masked)):
        if masked[j] == "{":
            depth += 1
        elif masked[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(masked) - 1


# --- #[cfg(test)] ---------------------------------------------------------------------------

CFG_ATTR = re.compile(r"#\s*(!?)\s*\[\s*cfg\s*\((?P<cond>[^\]]*)\)\s*\]")
ANY_ATTR = re.compile(r"#\s*\[[^\]]*\]")


def is_test_cfg(cond):
    """True for `test`, `all(test, ..)`: code compiled only for tests. `not(test)` and
    `any(test, ..)` are not test-only."""
    cond = re.sub(r"\s+", "", cond)
    if cond == "test":
        return True
    m = re.fullmatch(r"all\((.*)\)", cond)
    return bool(m) and "test" in m.group(1).split(",")


def strip_test_code(masked):
    """(masked text with `#[cfg(test)]` items blanked, names of `#[cfg(test)] mod x;` files,
    whether the whole file is `#![cfg(test)]`)."""
    out = list(masked)
    test_mods = []
    whole_file = False
    for m in CFG_ATTR.finditer(masked):
        if not is_test_cfg(m.group("cond")):
            continue
        if m.group(1) == "!":
            whole_file = True
            continue
        # The item after this attribute (and any further attributes).
        j = m.end()
        while True:
            k = len(masked[j:]) - len(masked[j:].lstrip())
            a = ANY_ATTR.match(masked, j + k)
            if not a:
                j += k
                break
            j = a.end()
        semi = masked.find(";", j)
        brace = masked.find("{", j)
        if semi >= 0 and (brace < 0 or semi < brace):
            end = semi
            mod = re.match(r"(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*;", masked[j : semi + 1])
            if mod:
                test_mods.append(mod.group(3))
        elif brace >= 0:
            end = matching_brace(masked, brace)
        else:
            continue
        for k in range(m.start(), end + 1):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out), test_mods, whole_file


# --- The source tree ----------------------------------------------------------------------


class File:
    def __init__(self, path, rel_module):
        self.path = path
        self.module = rel_module  # e.g. ["source", "asterisk"] for src/source/asterisk/mod.rs
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        masked, self.test_mods, self.test_only = strip_test_code(mask(self.text))
        self.code = "" if self.test_only else masked
        self.line_starts = [0] + [i + 1 for i, c in enumerate(self.text) if c == "\n"]

    def line_of(self, offset):
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1


def module_path_of(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return rel


def collect(src):
    """Every .rs file under `src` that is not test-only code."""
    files = {}
    for root, _dirs, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".rs"):
                p = os.path.join(root, name)
                files[p] = File(p, module_path_of(src, p))
    # Files declared by `#[cfg(test)] mod x;` are test code (and so is everything below them).
    excluded = set()
    for f in files.values():
        if os.path.basename(f.path) in ("lib.rs", "main.rs", "mod.rs"):
            base = os.path.dirname(f.path)
        else:
            base = f.path[: -len(".rs")]
        for m in f.test_mods:
            for cand in (os.path.join(base, m + ".rs"), os.path.join(base, m, "mod.rs")):
                if cand in files:
                    excluded.add(cand)
            excluded.update(p for p in files if p.startswith(os.path.join(base, m) + os.sep))
    return [f for p, f in sorted(files.items()) if p not in excluded]


def top_level_modules(src):
    mods = set()
    for name in os.listdir(src):
        p = os.path.join(src, name)
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs") and os.path.isfile(p):
            mods.add(name[:-3])
        elif os.path.isdir(p):
            mods.add(name)
    return mods


PATH_RE = re.compile(r"(?<![\w:$])((?:crate|super|self)(?:\s*::\s*(?:\w+|\{))+)")


def referenced_top_modules(f, mods):
    """(top-level module, line) for each path in `f` that names another top-level module."""
    found = []
    for m in PATH_RE.finditer(f.code):
        segs = [s.strip() for s in re.split(r"::", m.group(1))]
        # Resolve against the file's module path.
        where = list(f.module)  # src/a/b.rs and src/a/b/mod.rs are both a::b
        k = 0
        if segs[0] == "crate":
            where, k = [], 1
        else:
            while k < len(segs) and segs[k] in ("super", "self"):
                if segs[k] == "super":
                    if not where:
                        break
                    where = where[:-1]
                k += 1
        if where:  # still inside a top-level module: the path names its own items
            continue
        if k >= len(segs):
            continue
        line = f.line_of(m.start())
        if segs[k] == "{":
            # `crate::{a, b::c, d as e}`: the first segment of each top-level entry.
            open_at = m.start() + m.group(1).rfind("{")
            close = matching_brace(f.code, open_at)
            inner = f.code[open_at + 1 : close]
            depth, cur, names = 0, "", []
            for c in inner:
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                if c == "," and depth == 0:
                    names.append(cur)
                    cur = ""
                else:
                    cur += c
            names.append(cur)
            for n in names:
                head = re.match(r"\s*(\w+)", n)
                if head and head.group(1) in mods:
                    found.append((head.group(1), line))
        elif segs[k] in mods:
            found.append((segs[k], line))
    return found


def sccs(nodes, edges):
    """Tarjan's strongly connected components."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


FN_RE = re.compile(r"(?<![\w$])fn\s+([A-Za-z_]\w*)")


def long_functions(f, limit):
    found = []
    for m in FN_RE.finditer(f.code):
        # The body is the first `{` after the signature, unless a `;` ends it first (a trait
        # method without a body). Generic and where clauses hold no braces or semicolons.
        j = m.end()
        depth = 0  # parentheses/brackets: `[u8; 4]` in a signature is not the end
        body = None
        while j < len(f.code):
            c = f.code[j]
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif c == ";" and depth == 0:
                break
            elif c == "{" and depth == 0:
                body = j
                break
            j += 1
        if body is None:
            continue
        end = matching_brace(f.code, body)
        first, last = f.line_of(m.start()), f.line_of(end)
        if last - first + 1 > limit:
            found.append((last - first + 1, m.group(1), first))
    return found


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src = argv[1] if len(argv) == 2 else "src"
    if not os.path.isdir(src):
        print(f"check-structure: {src} is not a directory", file=sys.stderr)
        return 2
    src = os.path.normpath(src)
    files = collect(src)
    mods = top_level_modules(src)

    # (a) Cycles between top-level modules.
    edges, sites = {}, {}
    for f in files:
        if not f.module or f.module[0] not in mods:
            continue  # lib.rs, main.rs
        me = f.module[0]
        for other, line in referenced_top_modules(f, mods):
            if other != me:
                edges.setdefault(me, set()).add(other)
                sites.setdefault((me, other), f"{os.path.relpath(f.path)}:{line}")
    cycles = [c for c in sccs(mods, edges) if len(c) > 1]
    for c in cycles:
        print(f"cycle between {len(c)} modules: {', '.join(c)}")
        for a in c:
            for b in sorted(edges.get(a, ())):
                if b in c:
                    print(f"  {a} -> {b}  ({sites[(a, b)]})")

    # (b) Long functions.
    long_fns = []
    for f in files:
        for length, name, line in long_functions(f, MAX_FN):
            long_fns.append((length, f"{os.path.relpath(f.path)}:{line}", name))
    for length, where, name in sorted(long_fns, reverse=True):
        print(f"fn {name} is {length} lines (limit {MAX_FN}): {where}")

    # (c) main.rs.
    main_rs = os.path.join(src, "main.rs")
    main_lines = 0
    if os.path.isfile(main_rs):
        with open(main_rs, encoding="utf-8") as fh:
            main_lines = len(fh.read().splitlines())
        if main_lines > MAX_MAIN:
            print(f"{os.path.relpath(main_rs)} is {main_lines} lines (limit {MAX_MAIN})")

    failed = bool(cycles or long_fns or main_lines > MAX_MAIN)
    n_edges = sum(len(v) for v in edges.values())
    print(
        f"check-structure: {'FAIL' if failed else 'ok'}: {len(mods)} modules, {n_edges} "
        f"import edges, {len(cycles)} cycle(s); {len(long_fns)} fn(s) over {MAX_FN} lines; "
        f"main.rs {main_lines} lines (limit {MAX_MAIN})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
