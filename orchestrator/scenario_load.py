"""Reading a scenario file: YAML with line numbers, the schema, and every error placed at its line.

The schema's chaos events and mechanisms are discriminated unions built from their registries;
pydantic puts a member's tag into an error's location (`schedule.chaos[0].base_fee_shock.factor`),
which is not a key of the file, so locations are put back the way the file spells them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from orchestrator import chaos as chaos_registry
from orchestrator import mechanisms as mechanism_registry
from orchestrator.issues import ScenarioError, ScenarioIssue, file_error, quote
from orchestrator.scenario_locate import pydantic_issue
from orchestrator.yaml_loader import NULL_TAG, Loc, compose_yaml, position, read_yaml_file

if TYPE_CHECKING:
    from orchestrator.scenario import Scenario

__all__ = ["error_loc", "load_scenario", "load_scenario_text", "scenario_issue"]

# Union members by discriminator, for error locations: pydantic puts the member's tag into the
# location (`schedule.chaos[0].base_fee_shock.factor`), which is not a key of the file.
_UNIONS: dict[str, tuple[str, Any]] = {
    "chaos": ("event", chaos_registry.chaos_events),
    "incentive": ("type", lambda: {n: m.config_cls for n, m in mechanism_registry.mechanisms().items()}),
}


def _strip_union_tags(loc: Loc, data: Any) -> Loc:
    out: list[str | int] = []
    node = data
    owner: str | None = None  # the union whose member's tag may come next in `loc`
    for part in loc:
        if owner is not None and isinstance(node, dict) and part not in node \
                and part == node.get(_UNIONS[owner][0], "stakeable" if owner == "incentive" else None):
            owner = None
            continue
        owner = None
        out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if part == "incentive" and len(out) == 1:
            owner = "incentive"
        elif isinstance(part, int) and out[-2:-1] == ["chaos"]:
            owner = "chaos"
    return tuple(out)


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _union_member_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The registered class a chaos event or incentive section at `loc` was validated as."""
    owner = next((p for p in reversed(loc) if isinstance(p, str)), None)
    if owner not in _UNIONS:
        return None
    key, members = _UNIONS[owner]
    value = _value_at(data, loc)
    if not isinstance(value, dict):
        return None
    tag = value.get(key, "stakeable" if owner == "incentive" else None)
    return members().get(tag) if isinstance(tag, str) else None


def scenario_issue(err: Any, root: Any, data: Any) -> ScenarioIssue:
    """One pydantic error of a scenario as an issue at its line (union members' tags taken out)."""
    from orchestrator.scenario import Scenario

    return pydantic_issue(err, root, data, Scenario, strip_loc=_strip_union_tags, member_at=_union_member_at)


def error_loc(err: Any, data: Any) -> Loc:
    """Where in the scenario a pydantic error points, as the file spells it."""
    loc = _strip_union_tags(tuple(err["loc"]), data)
    if err.get("type") == "located":  # orchestrator.scenario_locate.field_error
        loc = loc + tuple(err["ctx"]["at"])
    return loc


def _required_keys() -> str:
    from orchestrator.scenario import Scenario

    return ", ".join(name for name, field in Scenario.model_fields.items() if field.is_required())


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raises ScenarioError on any problem."""
    return load_scenario_text(read_yaml_file(path), source=str(path))


def load_scenario_text(text: str, source: str = "<string>") -> Scenario:
    """Validate a scenario given as YAML text; `source` names it in errors."""
    root, data = compose_yaml(text, source)
    if root is None or (isinstance(root, ScalarNode) and root.tag == NULL_TAG):
        message = f"the file has no content; expected a mapping with at least {_required_keys()}"
        raise file_error(source, message)
    if not isinstance(root, MappingNode):
        kind = "a list" if isinstance(root, SequenceNode) else f"the value {quote(root.value)}"
        line, column = position(root.start_mark)
        message = (
            f"the top level must be a mapping of keys ({_required_keys()}, ...), got {kind}"
        )
        raise ScenarioError(source, [ScenarioIssue("", line, column, message)])

    from orchestrator.scenario import Scenario

    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        issues = [scenario_issue(err, root, data) for err in exc.errors()]
        # `from None`: the chained pydantic error would repeat raw inputs,
        # which may include values the messages deliberately leave out.
        raise ScenarioError(source, issues) from None
