"""A checker of `terraform fmt`'s canonical layout, for machines without the terraform binary.

`terraform fmt` is hclwrite's formatter (hashicorp/hcl, hclwrite/format.go) plus a few
expression rewrites (hashicorp/terraform, internal/command/fmt.go). hclwrite cuts the token
stream into lines, splits each line into up to three cells -- lead; assign, from the first
`=` on, if the brackets from there to the end of the line balance; comment, a trailing # or
// comment -- and then only changes the spaces before tokens:

* each line is indented 2 spaces per open bracket level, counted with a stack of the net
  brackets each line opened ({ [ ( and ${ %{ open; } ] ) close), so `}, {` stays level;
* 0 or 1 space between tokens, none before a newline;
* the `=` of the assign cells of consecutive lines one space after the longest lead, the
  comment cells of consecutive lines one space after the longest code. A blank line, a
  comment-only line or a line without an assign cell (`x = {`, `}`) ends a run; a heredoc
  is one token of the line it opens on, so `policy = <<EOF` is in the run.

Apart from a missing final newline, which terraform 1.11 adds, fmt keeps vertical
whitespace as written (hashicorp/terraform#23223, hashicorp/hcl2#129).

Rules checked here (the name is printed with each problem):

  indent    the indentation of hclwrite's indent stack (heredoc and /* */ bodies skipped)
  tab       a tab in the indentation or between tokens (fmt writes spaces; tabs inside
            strings, comments and heredocs are content)
  trailing  whitespace at the end of a line, outside heredoc and /* */ bodies
  align     the `=` of a run of assign cells at the run's column; one space after `=`
  equals    one space around the `=` of a line whose value opens a bracket (`x = {`)
  comment   the trailing comments of a run of lines at the run's column
  spaces    two or more spaces between tokens anywhere else (fmt never writes them)
  interp    an interpolation-only string `"${x}"` as a block attribute's value: terraform
            fmt unwraps it to `x`
  type      a quoted (pre-0.12) type or a bare list/map/set as a variable's `type`:
            terraform fmt rewrites it to string / list(string) / list(any) ...

  eof       no newline at the end of the file (terraform 1.11 adds it)

Stricter than fmt, on purpose (they keep diffs clean and cost nothing):

  blank     more than one blank line in a row (fmt keeps them)
  eof       also blank lines at the end of the file (fmt keeps them)
  trailing  also spaces at the end of a # comment (fmt keeps a comment's bytes)

Checked against terraform v1.11.4's `fmt` (tests/static/test_hcl_fmt.py runs both on the
same snippets where the binary exists).

Less than fmt, on purpose (the real `terraform fmt -check` test, where the binary exists,
catches these): a single space that should be none or the reverse inside a line
(`foo( a )`, `a ,b`, `[ 1 ]`, `- 1`, `a=1` in a one-line object), block labels fmt would
quote, lines inside a heredoc or a multi-line interpolation's string, and the column of an
aligned `=` when the lead before it is itself badly spaced (the column is computed from the
lead as written). The lexer is a small one: strings, interpolations, comments, heredocs and
brackets are tokens; any other character run is one token.

    python -m tests.static.hcl_fmt terraform/*.tf   # one problem a line; exit 1 if any
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

OPEN, CLOSE, EQ, COMMENT, NL, OQUOTE, CQUOTE, LIT, HEREDOC, OTHER = (
    "open", "close", "eq", "comment", "nl", "oquote", "cquote", "lit", "heredoc", "other")


@dataclass
class Token:
    kind: str
    text: str
    line: int  # 1-based physical line where it starts
    col: int  # 0-based column where it starts
    end_line: int  # physical line of its last character (a heredoc or /* */ spans lines)
    end_col: int  # column after its last character, on end_line


@dataclass
class Line:
    """hclwrite's formatLine: the tokens up to a newline outside heredocs and /* */ comments."""

    tokens: list[Token]
    lead: list[Token] = field(default_factory=list)
    assign: list[Token] = field(default_factory=list)  # from the `=` on
    comment: list[Token] = field(default_factory=list)  # a trailing # or // comment

    @property
    def number(self) -> int:
        return self.tokens[0].line

    @property
    def end_line(self) -> int:
        return self.tokens[-1].end_line


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_OPERATORS = ("...", "==", "!=", "<=", ">=", "=>", "&&", "||")
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\r?\n")


class _Scanner:
    """Just enough of hclsyntax's lexer: brackets, `=`, comments, strings with their
    interpolations, heredocs; every other token is OTHER."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.col = 0
        self.tokens: list[Token] = []
        self.verbatim: set[int] = set()  # physical lines inside a heredoc or a /* */ body

    def _advance(self, n: int) -> None:
        for ch in self.text[self.i:self.i + n]:
            if ch == "\n":
                self.line += 1
                self.col = 0
            else:
                self.col += 1
        self.i += n

    def _emit(self, kind: str, n: int) -> Token:
        line, col, start = self.line, self.col, self.i
        self._advance(n)
        if kind == NL:
            tok = Token(NL, "\n", line, col, line, col + 1)
        else:
            tok = Token(kind, self.text[start:self.i], line, col, self.line, self.col)
        self.tokens.append(tok)
        if tok.end_line > tok.line:
            self.verbatim.update(range(tok.line + 1, tok.end_line + 1))
        return tok

    def scan(self) -> list[Token]:
        self._code(interpolation=False)
        return self.tokens

    def _code(self, interpolation: bool) -> None:
        """Code up to the end of the text, or up to the `}` that ends an interpolation."""
        t = self.text
        braces = 0
        while self.i < len(t):
            ch, two = t[self.i], t[self.i:self.i + 2]
            if ch in " \t\r":
                self._advance(1)
            elif ch == "\n":
                self._emit(NL, 1)
            elif ch == "#" or two == "//":
                end = t.find("\n", self.i)
                self._emit(COMMENT, (len(t) if end < 0 else end) - self.i)
            elif two == "/*":
                end = t.find("*/", self.i + 2)
                self._emit(OTHER, (len(t) if end < 0 else end + 2) - self.i)
            elif ch == '"':
                self._emit(OQUOTE, 1)
                self._string()
            elif (m := _HEREDOC.match(t, self.i)) is not None:
                # The whole heredoc, closing marker included, is one token: hclwrite keeps it
                # on the line where it opens and leaves its body alone.
                close = re.compile(r"^[ \t]*" + re.escape(m.group(1)) + r"[ \t]*$", re.M).search(t, m.end())
                self._emit(HEREDOC, (len(t) if close is None else close.end()) - self.i)
            elif ch in "{[(":
                braces += ch == "{"
                self._emit(OPEN, 1)
            elif ch in "}])":
                if ch == "}" and interpolation and braces == 0:
                    self._emit(CLOSE, 1)  # hclsyntax's TemplateSeqEnd
                    return
                braces -= ch == "}"
                self._emit(CLOSE, 1)
            elif ch == "=" and t[self.i + 1:self.i + 2] not in ("=", ">"):
                self._emit(EQ, 1)
            else:
                op = next((o for o in _OPERATORS if t.startswith(o, self.i)), None)
                m = _IDENT.match(t, self.i) or _NUMBER.match(t, self.i)
                self._emit(OTHER, len(op) if op else len(m.group(0)) if m else 1)

    def _string(self) -> None:
        t = self.text
        start = None  # where the pending literal began: (offset, line, col)

        def literal() -> None:
            if start is not None and self.i > start[0]:
                self.tokens.append(Token(LIT, t[start[0]:self.i], start[1], start[2], self.line, self.col))

        while self.i < len(t):
            if start is None:
                start = (self.i, self.line, self.col)
            ch = t[self.i]
            if ch == "\\":
                self._advance(2)
            elif t.startswith(("$${", "%%{"), self.i):  # escaped, not a template
                self._advance(3)
            elif t.startswith(("${", "%{"), self.i):
                literal()
                self._emit(OPEN, 2)  # TemplateInterp / TemplateControl
                self._code(interpolation=True)
                start = None
            elif ch in '"\n':  # a newline only ends an (invalid) unterminated string
                literal()
                if ch == '"':
                    self._emit(CQUOTE, 1)
                return
            else:
                self._advance(1)


def _bracket(tok: Token) -> int:
    return 1 if tok.kind == OPEN else -1 if tok.kind == CLOSE else 0


def _lines(tokens: list[Token]) -> list[Line]:
    """hclwrite's linesForFormat, without the blank lines (adjacency says where they were)."""
    lines: list[Line] = []
    current: list[Token] = []
    for tok in tokens + [Token(NL, "", 0, 0, 0, 0)]:
        if tok.kind != NL:
            current.append(tok)
            continue
        if current:
            line = Line(current)
            lead = current
            if len(lead) > 1 and lead[-1].kind == COMMENT:
                line.comment, lead = lead[-1:], lead[:-1]
            line.lead = lead
            for i, t in enumerate(lead):
                if i > 0 and t.kind == EQ:
                    # an assign cell only if the value closes on this line (not `x = {`); a
                    # heredoc is one token here, so `x = <<EOF` joins the run (terraform 1.11 does)
                    if sum(map(_bracket, lead[i:])) == 0:
                        line.lead, line.assign = lead[:i], lead[i:]
                    break
            lines.append(line)
        current = []
    return lines


def _runs(lines: list[Line], has) -> list[list[Line]]:
    """Runs of lines that have the cell and follow each other with no line in between."""
    runs: list[list[Line]] = []
    prev = None
    for line in lines:
        if has(line):
            if prev is not None and has(prev) and line.number == prev.end_line + 1:
                runs[-1].append(line)
            else:
                runs.append([line])
        prev = line
    return runs


def check_text(text: str, path: str = "<text>") -> list[Problem]:
    problems: list[Problem] = []

    def bad(line: int, rule: str, message: str) -> None:
        problems.append(Problem(path, line, rule, message))

    scanner = _Scanner(text)
    tokens = scanner.scan()
    lines = _lines(tokens)
    physical = text.split("\n")

    for n, raw in enumerate(physical, 1):
        if n in scanner.verbatim:
            continue  # heredoc and /* */ bodies are content
        if raw != raw.rstrip(" \t\r"):
            bad(n, "trailing", "whitespace at the end of the line")
        if "\t" in raw[:len(raw) - len(raw.lstrip(" \t"))]:
            bad(n, "tab", "a tab in the indentation (terraform fmt indents with spaces)")
    for line in lines:  # tabs inside strings and comments are content; between tokens they are not
        for a, b in zip(line.tokens, line.tokens[1:]):
            if a.end_line == b.line and "\t" in physical[b.line - 1][a.end_col:b.col]:
                bad(b.line, "tab", "a tab between tokens (terraform fmt puts 0 or 1 space)")
                break

    # formatIndent: a stack of the net brackets each indenting line opened
    indents: list[int] = []
    for line in lines:
        net = sum(map(_bracket, line.lead)) + sum(map(_bracket, line.assign))
        closed = -net
        while closed > 0 and indents:
            if closed >= indents[-1]:
                closed -= indents.pop()
            else:
                indents[-1] -= closed
                closed = 0
        want = 2 * len(indents)
        if net > 0:
            indents.append(net)
        if line.tokens[0].col != want:
            bad(line.number, "indent", f"indented {line.tokens[0].col} spaces; terraform fmt indents {want} "
                                       f"(2 per open bracket level)")

    # formatCells: the `=` of consecutive assign cells, then consecutive trailing comments
    for run in _runs(lines, lambda ln: bool(ln.assign)):
        width = max(ln.lead[-1].end_col for ln in run)
        for ln in run:
            if ln.assign[0].col != width + 1:
                where = (f"column {width + 2}, one space after the longest name of the {len(run)} consecutive "
                         "assignments" if len(run) > 1 else f"column {width + 2}, one space after the name")
                bad(ln.number, "align", f"'=' at column {ln.assign[0].col + 1}; terraform fmt puts it at {where}")
    for run in _runs(lines, lambda ln: bool(ln.comment)):
        width = max((ln.assign or ln.lead)[-1].end_col for ln in run)
        for ln in run:
            if ln.comment[0].col != width + 1:
                bad(ln.number, "comment", f"trailing comment at column {ln.comment[0].col + 1}; terraform fmt puts "
                                          f"it at column {width + 2}, one space after the longest code of the "
                                          f"{len(run)} consecutive commented line(s)")

    # formatSpaces: 0 or 1 space between tokens, except before the aligned cells above
    for line in lines:
        aligned = {id(cell[0]) for cell in (line.assign, line.comment) if cell}
        for a, b in zip(line.tokens, line.tokens[1:]):
            if a.end_line != b.line or id(b) in aligned:
                continue
            gap = b.col - a.end_col
            if b.kind == EQ and gap != 1:
                bad(b.line, "equals", f"{gap} spaces before '='; terraform fmt puts one")
            elif a.kind == EQ and gap != 1:
                bad(b.line, "equals", f"{gap} spaces after '='; terraform fmt puts one")
            elif gap > 1:
                bad(b.line, "spaces", f"{gap} spaces before {b.text[:20]!r}; terraform fmt puts at most one")

    # terraform fmt's rewrites of the attributes of blocks (not of object items):
    # formatValueExpr and formatTypeExpr in internal/command/fmt.go
    blocks: list[tuple[bool, str]] = []  # (is a block, its first word) per open bracket level
    for line in lines:
        in_blocks = all(is_block for is_block, _ in blocks)
        value = line.assign[1:]
        if in_blocks and value and _interpolation_only(value):
            bad(line.number, "interp", 'an interpolation-only string: terraform fmt unwraps "${x}" to x')
        if in_blocks and [w for _, w in blocks] == ["variable"] and [t.text for t in line.lead] == ["type"]:
            words = [t.text for t in value]
            if words in (["list"], ["map"], ["set"]) or words in (['"', w, '"'] for w in ("string", "list", "map")):
                bad(line.number, "type", f"type = {''.join(words)}: terraform fmt rewrites it "
                                         "(string, list(string), map(string), list(any), ...)")
        net = sum(map(_bracket, line.tokens))
        opener = line.tokens[0].kind == OTHER and not any(t.kind == EQ for t in line.tokens)
        blocks.extend([(opener and line.tokens[-1].text == "{", line.tokens[0].text)] * max(net, 0))
        del blocks[len(blocks) - min(max(-net, 0), len(blocks)):]

    # ours, not fmt's (fmt keeps vertical whitespace as written)
    blank = 0
    for n, raw in enumerate(physical[:-1], 1):
        blank = blank + 1 if not raw.strip(" \t\r") and n not in scanner.verbatim else 0
        if blank == 2:
            bad(n, "blank", "two blank lines in a row (one at most)")
    if text and not text.endswith("\n"):
        bad(len(physical), "eof", "no newline at the end of the file")
    elif text.endswith("\n\n"):
        bad(len(physical) - 1, "eof", "blank line(s) at the end of the file (end with exactly one newline)")
    return sorted(problems, key=lambda p: (p.line, p.rule))


def _interpolation_only(value: list[Token]) -> bool:
    """`"${x}"`: one interpolation and nothing else in the string (terraform's own test)."""
    if len(value) < 5 or value[0].kind != OQUOTE or value[1].text != "${" or value[-1].kind != CQUOTE:
        return False
    depth = 0
    for t in value[1:-1]:
        depth += _bracket(t)
        if depth == 0:
            return t is value[-2]  # the first `${` closes right before the closing quote
    return False


def check_file(path: Path | str) -> list[Problem]:
    return check_text(Path(path).read_text(), str(path))


def main(argv: list[str]) -> int:
    problems = [p for arg in argv for p in check_file(arg)]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
