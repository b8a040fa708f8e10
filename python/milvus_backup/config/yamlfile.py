"""Read a config file's YAML safely: bounded in size, aliases and depth, and every error one
line that names the line and column and never repeats a secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .secrets import is_secret_name

# A backup.yaml is a few KiB; these bound what a hostile or broken one can cost to read.
MAX_CONFIG_BYTES = 256 << 10
MAX_YAML_NODES = 100_000  # values after alias expansion ("billion laughs")
MAX_YAML_DEPTH = 64


def read_config_file(shown: str, base_dir: Path) -> Any:
    """The file's one YAML document (None when empty); ConfigError when it cannot be read."""
    p = Path(shown)
    p = p if p.is_absolute() else base_dir / p
    if p.is_dir():
        raise ConfigError(f"config file {shown} is a directory; point --config at a YAML file")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config file {shown}: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{shown}: larger than {MAX_CONFIG_BYTES >> 10} KiB, far more than a backup.yaml needs; "
                          "point --config at the right file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{shown}: not valid UTF-8 at byte {e.start}; save the file as UTF-8") from None
    return _load_yaml(text, shown)


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # yaml has no types here: SafeLoader is Any
    """SafeLoader that notes anchors put on empty values, and turns a value its tag cannot
    build (``!!int abc``, a 13th month) into a marked YAML error instead of a ValueError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.empty_anchors: list[Any] = []

    def compose_scalar_node(self, anchor: str | None) -> Any:
        event = self.peek_event()
        if anchor is not None and event.value == "" and event.style is None:
            # password: &abc is an anchor named abc on an empty value, not the password "&abc".
            self.empty_anchors.append(event.start_mark)
        return super().compose_scalar_node(anchor)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(None, None, f"not a valid {tag} value", node.start_mark) from None


def _load_yaml(text: str, shown: str) -> Any:
    """Parse one YAML document, refusing what would cost more than a config file can need."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks the characters first
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, shown)
        if loader.empty_anchors:
            line = loader.empty_anchors[0].line + 1
            raise ConfigError(f"{shown}: not valid YAML at line {line}: a value starting with & is read as a YAML "
                              "anchor, which leaves the value empty; quote the value")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        raise ConfigError(_yaml_error(e, text, shown)) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{shown}: not valid YAML at line {line}: unacceptable character #x{e.character:04x}; "
                          "remove it") from None
    except yaml.YAMLError:
        raise ConfigError(f"{shown}: not valid YAML; fix the file or point --config at another one") from None
    except RecursionError:
        raise ConfigError(f"{shown}: values nested too deeply; a config file needs a few levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expansion(root: Any, shown: str) -> None:
    """Count the values the document holds once its aliases are expanded (each node once,
    remembering subtotals), so a billion-laughs file is refused before anything walks it."""
    totals: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) with aliases expanded
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _yaml_children(node)
        if children_done:
            open_nodes.discard(id(node))
            values = 1 + sum(totals[id(c)][0] for c in children)
            depth = 1 + max((totals[id(c)][1] for c in children), default=0)
            if values > MAX_YAML_NODES:
                raise ConfigError(f"{shown}: the YAML expands to more than {MAX_YAML_NODES:,} values through its "
                                  "aliases (*name); a config file needs far fewer: remove the aliases")
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{shown}: values nested more than {MAX_YAML_DEPTH} levels deep; "
                                  "a config file needs a few levels")
            totals[id(node)] = (values, depth)
        elif id(node) in open_nodes:
            raise ConfigError(f"{shown}: a YAML alias (*name) refers to a value that contains it; remove the cycle")
        elif id(node) not in totals:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in totals)


def _yaml_children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_YAML_KEY = re.compile(r"""(?:^|[{,]|-\s)\s*["']?([^\s"':{},\[\]#]+)["']?\s*:(?=\s|$)""")


def _yaml_error(e: yaml.MarkedYAMLError, text: str, shown: str) -> str:
    """One line for a YAML error: where, and what, with any token it quotes from the line of
    a secret masked (an undefined alias ``*abc`` as a password would otherwise repeat it)."""
    mark = e.problem_mark or e.context_mark
    secret = _secret_lines(text)
    hide = any(m is not None and m.line in secret for m in (e.problem_mark, e.context_mark))

    def clean(words: str) -> str:
        return _QUOTED.sub("'****'", words) if hide else words

    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = clean(e.problem or e.context or "syntax error")
    if e.problem and e.context:
        context_line = e.context_mark.line + 1 if e.context_mark else None
        problem += f" ({clean(e.context)}" + (f" at line {context_line})" if context_line else ")")
    return f"{shown}: not valid YAML{where}: {problem}; fix the file or point --config at another one"


def _secret_lines(text: str) -> set[int]:
    """Line numbers (0-based) that hold the value of a secret key: the key's line and the
    lines below it indented deeper (or list items at its indentation)."""
    lines = text.splitlines()
    found: set[int] = set()
    for i, line in enumerate(lines):
        if not any(is_secret_name(k) for k in _YAML_KEY.findall(line)):
            continue
        indent = len(line) - len(line.lstrip())
        found.add(i)
        for j in range(i + 1, len(lines)):
            body = lines[j].lstrip()
            depth = len(lines[j]) - len(body)
            if (body and depth < indent) or (depth == indent and body and not body.startswith("- ")):
                break
            found.add(j)
    return found
