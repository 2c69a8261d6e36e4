"""docs/troubleshooting.md covers every message cnnvit can show a user.

The messages are read from the source with `ast` (nothing is imported, so no torch):

- the first argument of every call to `CnnvitError`, `Interrupted` or a subclass of
  `CnnvitError` (`ConfigError`, `DataError`, ... found wherever they are defined);
- the strings returned by helpers whose result is passed to such a call
  (`DataError(r.missing_message())`), and the message argument of helpers that forward one
  to such a call (`_stop(run, f"...")` in engine/train.py);
- logged warnings and errors (`log.warning(...)`, `run.log.error(...)`, `warnings.warn(...)`,
  a string variable given to one), lines printed to stderr and argparse's usage-error line;
- data notes (`notes.append(...)`, `notes = [...]`, `skipped = [...]`) in cnnvit/data and
  cnnvit/metrics.py, which `cnnvit.data.load` logs as warnings.

Each message becomes a skeleton: its literal text, with a placeholder for every f-string
field (the doc writes `<file>`, `<split>`, ...; a placeholder matches up to 60 characters of
anything, or nothing). A message is covered when the doc (lower-cased, backticks dropped,
whitespace collapsed) holds its opening: the skeleton from its first literal text through
its key segment (its first literal part of at least 3 words, else the part with the most
words), at least 5 and at most 8 words long; a message of at most 5 words, whole. A word is
literal text with two letters or more.

So a doc entry may shorten a long message, but must quote how it begins, up to what makes it
distinctive: `config key '<key>' must be one of` is not covered by a doc that only says
`config key '<key>' must be positive`.
"""

from __future__ import annotations

import ast
import functools
import re
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cnnvit"
DOC = ROOT / "docs" / "troubleshooting.md"

# Notes (warnings collected in a list and logged later) only count in these modules: elsewhere
# a `notes` list is something else (models/weights.py: the report of what was adapted).
NOTE_MODULES = ("data/", "metrics.py")
NOTE_LISTS = {"notes", "skipped"}
LOG_METHODS = {"warning", "warn", "error"}
MIN_WORDS, MAX_WORDS = 5, 8  # literal words of its opening a doc entry must quote
PLACEHOLDER = ".{0,60}?"  # an f-string field: `<file>`, `did you mean <name>? `, ...

# Messages no user can trigger: (module, a phrase of the message). Keep this short and say
# why each is unreachable.
EXCLUDED = [
    # config._coerce: raised after every declared type was handled (`pragma: no cover`); only
    # a new Config field of an unhandled type, a programming error, could reach it
    ("config.py", "' has an unsupported type "),
]

# Facts the doc must state that are not messages in the source.
REQUIRED_FACTS = [
    "exit code", "130", "143", "$cnnvit_cache", "$xdg_cache_home/cnnvit", "~/.cache/cnnvit",
    "train.log", "logs/run_", "logs/crash-", "cnnvit --debug",
]


@dataclass(frozen=True)
class Message:
    """One message found in the source: where, and its parts (str: literal text, None: an
    f-string field)."""

    module: str
    line: int
    parts: tuple[str | None, ...]

    @property
    def text(self) -> str:
        return "".join("<…>" if p is None else p for p in self.parts)


# -- reading the source ------------------------------------------------------------------------


def _name(func: ast.expr) -> str | None:
    """`f` for `f(...)`, `obj.f(...)` and `(a or b).f(...)`."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _parts(node: ast.expr | None) -> list[str | None] | None:
    """The literal parts and fields of a string expression; None if it is not one."""
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.Constant) else None for v in node.values]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _parts(node.left), _parts(node.right)
        if left is None and right is None:
            return None
        return (left or [None]) + (right or [None])
    if isinstance(node, ast.Subscript):  # f"...".splitlines()[0]
        return _parts(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr in ("splitlines", "strip", "format"):
        return _parts(node.func.value)
    return None


def _arg(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


class _Module:
    """One parsed module, with each node's enclosing function."""

    def __init__(self, path: Path) -> None:
        self.name = path.relative_to(SRC).as_posix()
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.scope: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    self.scope[inner] = node  # innermost wins: walked after its outer function

    def functions(self) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
        return [n for n in ast.walk(self.tree)
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]

    def resolve(self, node: ast.expr | None, at: ast.AST) -> list[str | None] | None:
        """A string expression, or a local variable assigned one in the same function."""
        parts = _parts(node)
        if parts is not None or not isinstance(node, ast.Name):
            return parts
        func = self.scope.get(at)
        for stmt in ast.walk(func) if func is not None else ():
            if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == node.id for t in stmt.targets):
                if (found := _parts(stmt.value)) is not None:
                    return found
        return None


def _modules() -> list[_Module]:
    return [_Module(p) for p in sorted(SRC.rglob("*.py"))]


def _error_classes(modules: list[_Module]) -> set[str]:
    """CnnvitError, every class derived from it anywhere in the package, and Interrupted."""
    classes = {"CnnvitError"}
    defs = [n for m in modules for n in ast.walk(m.tree) if isinstance(n, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for cls in defs:
            if cls.name not in classes and any(_name(b) in classes for b in cls.bases):
                classes.add(cls.name)
                grew = True
    return classes | {"Interrupted"}


def _forwarders(modules: list[_Module], classes: set[str]) -> dict[str, int]:
    """Functions that raise one of `classes` with one of their own parameters as the message:
    function name → that parameter's position (e.g. `_stop(run, message)` → 1)."""
    out = {}
    for m in modules:
        for func in m.functions():
            params = [a.arg for a in func.args.args]
            for node in ast.walk(func):
                if isinstance(node, ast.Call) and _name(node.func) in classes:
                    first = _arg(node, 0, "message")
                    if isinstance(first, ast.Name) and first.id in params:
                        out[func.name] = params.index(first.id)
    return out


@functools.cache
def find_messages() -> tuple[Message, ...]:
    """Every user-facing message of the package (see the module docstring)."""
    modules = _modules()
    classes = _error_classes(modules)
    forwarders = _forwarders(modules, classes)
    builders: set[str] = set()
    found: list[tuple[_Module, int, list[str | None] | None]] = []
    for m in modules:
        notes_here = m.name.startswith(NOTE_MODULES)
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Assign) and notes_here and any(
                    isinstance(t, ast.Name) and t.id in NOTE_LISTS for t in node.targets):
                value = node.value
                for branch in ((value.body, value.orelse) if isinstance(value, ast.IfExp)
                               else (value,)):
                    if isinstance(branch, ast.List):
                        found += [(m, node.lineno, _parts(e)) for e in branch.elts]
            if not isinstance(node, ast.Call):
                continue
            name, func = _name(node.func), node.func
            if name in classes:
                first = _arg(node, 0, "message")
                if isinstance(first, ast.Call) and _name(first.func):
                    builders.add(str(_name(first.func)))
                else:
                    found.append((m, node.lineno, m.resolve(first, node)))
            elif name in forwarders:
                found.append((m, node.lineno, m.resolve(_arg(node, forwarders[name], ""),
                                                        node)))
            elif name in LOG_METHODS and isinstance(func, ast.Attribute):
                found.append((m, node.lineno, m.resolve(_arg(node, 0, "msg"), node)))
            elif name == "print" and any(k.arg == "file" for k in node.keywords):
                found.append((m, node.lineno, _parts(_arg(node, 0, ""))))
            elif name == "exit" and isinstance(func, ast.Attribute):  # argparse's usage error
                found.append((m, node.lineno, _parts(_arg(node, 1, "message"))))
            elif name in ("append", "insert") and notes_here and isinstance(func, ast.Attribute) \
                    and isinstance(func.value, ast.Name) and func.value.id in NOTE_LISTS:
                found.append((m, node.lineno, _parts(node.args[-1] if node.args else None)))
    for m in modules:  # helpers that build a message passed to an error
        for func in m.functions():
            if func.name in builders:
                found += [(m, r.lineno, _parts(r.value)) for r in ast.walk(func)
                          if isinstance(r, ast.Return)]
    messages = {Message(m.name, line, tuple(p)) for m, line, p in found if p is not None}
    return tuple(sorted((msg for msg in messages if _words(msg.parts)),
                        key=lambda msg: (msg.module, msg.line)))


# -- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    regex: str
    word: bool          # literal text with two letters in a row
    field: bool         # an f-string field
    gap: bool           # whitespace before it in the message
    part: int           # which literal part it comes from (-1: a field)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", "").replace("\\|", "|")).strip().lower()


def _tokens(parts: tuple[str | None, ...]) -> list[Token]:
    tokens: list[Token] = []
    gap = False
    for i, part in enumerate(parts):
        if part is None:
            tokens.append(Token(PLACEHOLDER, False, True, gap, -1))
            gap = False
            continue
        text = part.replace("`", "")
        for piece in re.split(r"(\s+)", text):
            if not piece:
                continue
            if piece.isspace():
                gap = True
                continue
            tokens.append(Token(re.escape(piece.lower()), bool(re.search(r"[a-zA-Z]{2}", piece)),
                                False, gap, i))
            gap = False
    return tokens


def _words(parts: tuple[str | None, ...]) -> int:
    return sum(t.word for t in _tokens(parts))


def _regex(tokens: list[Token]) -> str:
    out = tokens[0].regex
    for before, token in zip(tokens, tokens[1:], strict=False):
        out += r"\s*" if before.field or token.field else r"\s+" if token.gap else ""
        out += token.regex
    return out


def pattern(msg: Message) -> str:
    """The regex the doc must match for `msg` to be covered: the message's opening, from its
    first literal text through its key segment (see the module docstring)."""
    tokens = _tokens(msg.parts)
    while tokens and tokens[0].field:
        tokens.pop(0)
    while tokens and tokens[-1].field:
        tokens.pop()
    words = [i for i, t in enumerate(tokens) if t.word]
    if len(words) <= MIN_WORDS:
        return _regex(tokens)
    counts: dict[int, int] = {}
    for i in words:
        counts[tokens[i].part] = counts.get(tokens[i].part, 0) + 1
    key = next((p for p, n in counts.items() if n >= 3), max(counts, key=counts.__getitem__))
    end = max(i for i, t in enumerate(tokens) if t.part == key) + 1
    taken = sum(1 for i in words if i < end)
    if taken < MIN_WORDS:
        end = words[MIN_WORDS - 1] + 1
    elif taken > MAX_WORDS:
        end = words[MAX_WORDS - 1] + 1
    return _regex(tokens[:end])


def covered(msg: Message, doc: str) -> bool:
    return re.search(pattern(msg), doc) is not None


def _excluded(msg: Message) -> bool:
    return any(msg.module == module and phrase in msg.text for module, phrase in EXCLUDED)


def uncovered(doc: str) -> list[Message]:
    return [m for m in find_messages() if not _excluded(m) and not covered(m, doc)]


# -- tests -------------------------------------------------------------------------------------


def test_finds_the_messages() -> None:
    """The extraction sees the whole package: every kind of source, in every area."""
    t0 = time.perf_counter()
    messages = find_messages.__wrapped__()  # uncached: the time of a full read
    assert time.perf_counter() - t0 < 3
    assert len(messages) > 180, len(messages)
    modules = {m.module for m in messages}
    for module in ("cli.py", "config.py", "presets.py", "checkpoint.py", "engine/train.py",
                   "data/validate.py", "data/medmnist_source.py", "data/cifar.py",
                   "models/inputs.py", "models/hub.py", "explain/stage.py", "bench.py",
                   "plots/sources.py", "io.py"):
        assert module in modules, module
    texts = [m.text for m in messages]
    for expected in ("did not learn", "(see --help)", "internal error", "is not a valid .npz",
                     "not found in", "contains pickled Python objects", "interrupted at epoch",
                     "states a minimum input", "split has no images of", "that are not images",
                     "maps barely change"):
        assert any(expected in t for t in texts), expected
    for module, phrase in EXCLUDED:  # each exclusion still names exactly one message
        assert [m.module for m in messages if phrase in m.text] == [module], phrase


def test_every_message_is_in_the_doc() -> None:
    doc = normalise(DOC.read_text(encoding="utf-8"))
    missing = uncovered(doc)
    assert not missing, "docs/troubleshooting.md lacks these messages:\n" + "\n".join(
        f"  {m.module}:{m.line}: {m.text}" for m in missing)


def test_the_doc_states_logs_caches_and_exit_codes() -> None:
    doc = normalise(DOC.read_text(encoding="utf-8"))
    assert [f for f in REQUIRED_FACTS if f not in doc] == []
    assert "allow_pickle=true" not in doc and "weights_only=false" not in doc


def test_a_missing_section_is_noticed() -> None:
    """The check can fail: the doc without its Data section misses the data messages."""
    text = DOC.read_text(encoding="utf-8")
    sections = re.split(r"(?m)^(?=## )", text)
    data = [s for s in sections if s.startswith("## Data")]
    assert len(data) == 1
    without = normalise("".join(s for s in sections if s is not data[0]))
    lost = {m.module for m in uncovered(without)}
    assert {"data/validate.py", "data/npz.py", "data/folder.py"} <= lost, lost


def test_matching_rule() -> None:
    """Fields match what the doc writes for them; a message's opening must be quoted."""
    msg = Message("x.py", 1, ("config key '", None, "' expects ", None, ", got ", None))
    assert covered(msg, normalise("`config key '<key>' expects <type>, got <value>`"))
    assert not covered(msg, normalise("`config key '<key>' must be positive; got <value>`"))
    choice = Message("x.py", 1, ("config key '", None, "' must be one of ", None, "; got '",
                                 None, "'"))
    assert covered(choice, normalise("| `config key '<key>' must be one of <choices>` |"))
    assert not covered(choice, normalise("config key '<key>' must be positive; head_fusion "
                                         "must be one of mean, max"))
    long = Message("x.py", 1, (None, ": images must be N×H×W (grey) or N×H×W×C with C 1 or 3, "
                                     "got shape ", None, "; save grey images as N×H×W"))
    assert covered(long, normalise("`<file> (<split> split): images must be N×H×W (grey)\n"
                                   "or N×H×W×C with C 1 or 3, got shape <shape>; …`"))
    assert not covered(long, normalise("`<file>: images must be N×H×W (grey) or N×H×W×C …`"))
    assert not covered(long, normalise("save grey images as N×H×W"))
