"""gitignore-style patterns (https://git-scm.com/docs/gitignore), as Ray's
runtime_env `excludes` and the `.gitignore` files of an uploaded directory use
them.  Pure: paths in, decisions out.

What is understood: blank lines and `#` comments; `!` (re-include); a trailing
`/` (directories only); a `/` at the start or in the middle anchors the pattern
to the directory of its rules (else it matches a name at any depth); `*` and `?`
(never across `/`), `[...]` classes, `**` (leading `**/`, trailing `/**`,
middle `/**/`); `\\` escapes.  The last rule that matches a path decides, and a
directory that is ignored is not entered (so, as in git, nothing below it can be
re-included).
"""
import re


def _translate(glob: str) -> str:
    """The regex (no anchors) of a gitignore glob made of path segments."""
    out = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i) and (i == 0 or glob[i - 1] == "/"):
            out.append("(?:.*/)?")      # zero or more directories
            i += 3
        elif glob.startswith("/**", i) and i + 3 == n:
            out.append("/.*")           # everything inside
            i += 3
        elif c == "*":
            out.append("[^/]*")
            i += 1
            while i < n and glob[i] == "*":   # a stray ** inside a segment is *
                i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = glob.find("]", i + 2 if glob[i + 1:i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1:j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class Rule:
    __slots__ = ("pattern", "regex", "negate", "dir_only")

    def __init__(self, pattern: str, regex, negate: bool, dir_only: bool):
        self.pattern = pattern
        self.regex = regex
        self.negate = negate
        self.dir_only = dir_only


def parse(line: str, base: str = ""):
    """The Rule of one pattern line, for paths relative to the top of the tree
    (`base`: the directory, relative to that top, whose rules these are), or
    None for a blank line or a comment."""
    text = line.rstrip("\n")
    if not text.endswith("\\ "):
        text = text.rstrip()
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    if negate:
        text = text[1:]
    elif text.startswith("\\!") or text.startswith("\\#"):
        text = text[1:]
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    text = text.lstrip("/")
    prefix = re.escape(base.strip("/") + "/") if base.strip("/") else ""
    body = _translate(text)
    regex = re.compile("^" + prefix + ("" if anchored else "(?:.*/)?") + body + "$")
    return Rule(line, regex, negate, dir_only)


class Rules:
    """An ordered set of rules; the last one matching a path decides."""

    def __init__(self, lines=(), base: str = ""):
        self.rules = []
        self.add(lines, base)

    def add(self, lines, base: str = "") -> None:
        for line in lines:
            r = parse(line, base)
            if r is not None:
                self.rules.append(r)

    def ignored(self, relpath: str, is_dir: bool) -> bool:
        """Whether `relpath` (posix, relative to the top) is ignored."""
        result = False
        for r in self.rules:
            if r.dir_only and not is_dir:
                continue
            if r.regex.match(relpath):
                result = not r.negate
        return result
