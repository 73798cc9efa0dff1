"""Reading hand-written YAML safely, keeping line numbers.

Every scenario and sweep file goes through `read_yaml_file` / `compose_yaml`: the document is
composed into nodes (which remember their line and column) before it becomes data, so that errors
can point into the file, and so that hostile or broken documents are refused early and cheaply:

* a size cap (`MAX_BYTES`): scenario files are a few kilobytes;
* a nesting cap (`MAX_DEPTH`), checked on the parser's events before any node exists, because
  PyYAML's composer and constructor recurse once per level (a deep document is a RecursionError);
* an alias-expansion cap (`MAX_NODES`): `*alias` reuses a node, so a short file can stand for
  billions of values (the "billion laughs"); every later walk (duplicate keys, validation) would
  visit them all. The expanded size is counted once per node, in linear time;
* recursive aliases and repeated keys (PyYAML keeps the last silently).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .issues import ScenarioError, ScenarioIssue, file_error

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Loc", "compose_yaml", "format_loc", "key_of", "locate",
           "position", "read_yaml_file"]

MAX_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_NODES = 100_000

Loc = tuple[str | int, ...]

MERGE_TAG = "tag:yaml.org,2002:merge"
NULL_TAG = "tag:yaml.org,2002:null"


def read_yaml_file(path: str | Path, what: str = "scenario file") -> str:
    """The text of a YAML input file; ScenarioError (naming the file) when it cannot be one."""
    shown = str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise file_error(shown, f"is a directory, not a {what}")
        if size > MAX_BYTES:
            raise file_error(shown, f"{size:,} bytes: too large for a {what} (limit {MAX_BYTES:,} bytes)")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise file_error(shown, f"file not found (looked for {p.absolute()})") from None
    except PermissionError:
        raise file_error(shown, "cannot read the file: permission denied") from None
    except OSError as exc:
        raise file_error(shown, f"cannot read the file: {exc.strerror or exc}") from None
    if b"\0" in raw[:8192]:
        raise file_error(shown, f"a binary file, not a {what} (YAML text)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise file_error(shown, f"not UTF-8 text (bad byte at offset {exc.start})") from None


def compose_yaml(text: str, source: str) -> tuple[Node | None, Any]:
    """The YAML document's root node (kept for line numbers) and its data. Syntax errors, documents
    past the limits and repeated keys raise ScenarioError naming `source`, line and column; an empty
    document gives (None, None)."""
    if len(text) > MAX_BYTES:
        raise file_error(source, f"{len(text):,} characters: too large (limit {MAX_BYTES:,})")
    _check_depth(text, source)
    try:
        # The reader checks for unprintable characters right away.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [_yaml_issue(exc, text)]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ScenarioError(source, [_yaml_issue(exc, text)]) from None
        if root is None:
            return None, None
        _check_expansion(root, source)
        duplicates = _duplicate_keys(root)
        if duplicates:
            raise ScenarioError(source, duplicates)
        try:
            return root, loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise ScenarioError(source, [_yaml_issue(exc, text)]) from None
    finally:
        loader.dispose()


def position(mark: Mark | None) -> tuple[int | None, int | None]:
    """1-based (line, column) of a node mark."""
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def key_of(node: Node) -> str | None:
    # Only scalar keys can name a field; complex keys are left to the validator.
    return node.value if isinstance(node, ScalarNode) else None


def format_loc(loc: Loc) -> str:
    """`("agents", 0, "count")` -> `agents[0].count`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def locate(root: Node, loc: Loc) -> tuple[int, Mark, Node]:
    """Follow `loc` through the node tree as far as the file has it.

    Returns how many parts of `loc` were found, the mark to report (the key of the last mapping
    entry found, or the node itself for list items and the root) and the node found.
    """
    node, mark, depth = root, root.start_mark, 0
    for part in loc:
        if isinstance(node, MappingNode):
            # Keys compare as text so that pydantic's `1` finds a YAML `1:`; the last match wins, as
            # it does in the constructed dict.
            matches = [(k, v) for k, v in node.value if key_of(k) == str(part)]
            if not matches:
                break
            key_node, node = matches[-1]
            mark = key_node.start_mark
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
        depth += 1
    return depth, mark, node


# --------------------------------------------------------------------------------------------------
# Limits


def _check_depth(text: str, source: str) -> None:
    # The parser keeps its own stack (no recursion), so walking its events is safe at any depth.
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line, column = position(event.start_mark)
                    raise file_error(source, f"nested more than {MAX_DEPTH} levels deep; a scenario needs a "
                                     "handful", line, column)
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
            elif isinstance(event, AliasEvent):
                pass
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [_yaml_issue(exc, text)]) from None


def _check_expansion(root: Node, source: str) -> None:
    """Refuse a document whose aliases expand it past MAX_NODES values, or that contains itself."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # An explicit stack rather than recursion: depth is already bounded, but this walk must stay
    # linear however the aliases are arranged, so every node is sized exactly once.
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        nid = id(node)
        if children_done:
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            in_progress.discard(nid)
            sizes[nid] = total
            if total > MAX_NODES:
                line, column = position(node.start_mark)
                raise file_error(source, f"YAML aliases expand this value to more than {MAX_NODES:,} values (an "
                                 "alias bomb?); write the values out or use fewer aliases", line, column)
            continue
        if nid in sizes:
            continue
        if nid in in_progress:
            line, column = position(node.start_mark)
            raise file_error(source, "a YAML alias refers to the value that contains it (a recursive "
                             "structure); scenario values must be finite", line, column)
        in_progress.add(nid)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in in_progress:
                line, column = position(child.start_mark)
                raise file_error(source, "a YAML alias refers to the value that contains it (a recursive "
                                 "structure); scenario values must be finite", line, column)
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _duplicate_keys(root: Node) -> list[ScenarioIssue]:
    # Each node is checked once, whatever the number of aliases to it: an aliased mapping with a
    # repeated key is reported at its one definition.
    issues: list[ScenarioIssue] = []
    seen: set[int] = set()
    stack: list[tuple[Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[tuple[str, str], Mark] = {}
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    stack.append((value_node, loc))
                    continue  # merged mappings are anchored, and checked, where they are defined
                key = key_of(key_node)
                if key is None:
                    continue
                child = loc + (key,)
                # The tag is part of the identity: `1:` and `"1":` differ.
                ident = (key_node.tag, key)
                if ident in first:
                    line, column = position(key_node.start_mark)
                    message = (f"duplicate key {key!r} (first defined on line {first[ident].line + 1}, "
                               f"again on line {line})")
                    issues.append(ScenarioIssue(format_loc(child), line, column, message))
                else:
                    first[ident] = key_node.start_mark
                stack.append((value_node, child))
        elif isinstance(node, SequenceNode):
            stack.extend((item, loc + (i,)) for i, item in enumerate(node.value))
    return issues


def _yaml_issue(exc: yaml.YAMLError, text: str) -> ScenarioIssue:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            context = exc.context
            if exc.context_mark is not None:
                context += f" on line {exc.context_mark.line + 1}"
            # PyYAML splits some sentences as context="expected X", problem="but found Y"; keep
            # those in reading order.
            if exc.problem.startswith("but "):
                problem = f"{context}, {exc.problem}"
            else:
                problem = f"{exc.problem} ({context})"
        line, column = position(mark)
        return ScenarioIssue("", line, column, f"YAML syntax error: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        # Reader errors (e.g. control characters) carry an offset, not a mark.
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        return ScenarioIssue("", line, column, f"YAML syntax error: {exc.reason}")
    return ScenarioIssue("", None, None, "YAML syntax error: " + " ".join(str(exc).split()))
