"""Which steps a drawing of a big DAG shows as one group node ("prep ×60").

A fan-out makes many steps from one function or listener: ``prep``, ``prep_1``, ...
(the ids the DAG gives repeated names). Steps of one kind and one base name in the same
layer of the DAG collapse into one node, so a run of 1,000 steps draws as a few dozen
boxes. Pure computation on step ids; it draws nothing.

The live widget groups in the browser with a JavaScript port of :func:`group_steps`
(``groupSteps`` in assets/run_widget.js); change both together,
tests/ui/test_widget_groups_js.py checks that they group alike. The static picture uses
this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evkit.model import StepKind, StepShape

GROUP_MIN_SIZE = 5
"""Fewer steps of one name in one layer are drawn one by one."""

GROUP_ABOVE_STEPS = 24
"""DAGs of at most this many steps are never grouped: every box fits and reads."""

GROUP_LABEL_CHARS = 20
"""The longest first line of a group node ("prep ×60", in bold): the name is shortened."""


def base_name(step_id: str) -> str:
    """The name a step id was made from: ``"prep_12"`` -> ``"prep"`` (see ``evkit.dag``)."""
    head, sep, number = step_id.rpartition("_")
    return head if sep and number.isascii() and number.isdigit() else step_id


def group_text(name: str, count: int) -> str:
    """A group node's first line: ``"prep ×60"``, the name shortened to fit the box."""
    suffix = f" ×{count:,}"
    room = max(4, GROUP_LABEL_CHARS - len(suffix))
    return (name if len(name) <= room else name[: room - 1] + "…") + suffix


def group_id(kind: str, name: str, layer: int) -> str:
    """The id of the group node of the steps named ``name`` in ``layer``."""
    return f"group:{kind}:{name}@{layer}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DrawnNode:
    """One box of a drawing: a step, or a group of steps.

    Attributes:
        node_id: The step id, or the group's id (:func:`group_id`).
        kind: ``"function"`` or ``"event"``.
        name: The step id, or the base name the group's steps share.
        members: The steps the box stands for, in step order (one for a step).
        is_group: True for a group node.
    """

    node_id: str
    kind: StepKind
    name: str
    members: tuple[str, ...]
    is_group: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Drawing:
    """The boxes and edges a view draws for a DAG.

    Attributes:
        nodes: In topological order (by layer, then by their first step).
        edges: ``(upstream node id, node id)`` pairs, each once.
        node_of: ``step_id -> node id`` of the box that shows the step.
    """

    nodes: tuple[DrawnNode, ...]
    edges: tuple[tuple[str, str], ...]
    node_of: dict[str, str]

    @property
    def grouped(self) -> bool:
        """True when at least one box stands for several steps."""
        return any(node.is_group for node in self.nodes)

    def as_steps(self) -> list[tuple[str, Sequence[str]]]:
        """``(node id, upstream node ids)`` pairs, the input of ``layout.compute_layout``."""
        upstream: dict[str, list[str]] = {node.node_id: [] for node in self.nodes}
        for a, b in self.edges:
            upstream[b].append(a)
        return list(upstream.items())


def group_steps(
    shapes: Sequence[StepShape],
    *,
    expanded: Iterable[str] = (),
    min_size: int = GROUP_MIN_SIZE,
    above_steps: int = GROUP_ABOVE_STEPS,
) -> Drawing:
    """Group the steps of a DAG for drawing.

    Args:
        shapes: Every step as ``(step_id, kind, upstream)``, in topological order.
        expanded: Ids of groups to draw step by step instead.
        min_size: Fewest steps a group node stands for.
        above_steps: DAGs of at most this many steps are not grouped.

    Returns:
        The drawing.
    """
    # Plain loops and dict lookups: this runs on the engine loop for every static
    # picture of a big run (a few microseconds a step).
    layer: dict[str, int] = {}
    key_of: dict[str, tuple[str, str, int]] = {}
    members: dict[tuple[str, str, int], list[str]] = {}
    for step_id, kind, upstream in shapes:  # topological: upstream layers are known
        index = 0
        for u in upstream:
            above = layer.get(u)  # None: not a step of this DAG
            if above is not None and above >= index:
                index = above + 1
        layer[step_id] = index
        key: tuple[str, str, int] = (kind, base_name(step_id), index)
        key_of[step_id] = key
        same = members.get(key)
        if same is None:
            members[key] = [step_id]
        else:
            same.append(step_id)
    gid_of: dict[tuple[str, str, int], str] = {}
    if len(shapes) > above_steps:
        opened = set(expanded)
        for key, same in members.items():
            gid = group_id(*key)
            if len(same) >= min_size and gid not in opened:
                gid_of[key] = gid
    node_of: dict[str, str] = {}
    nodes: list[tuple[int, int, DrawnNode]] = []
    for position, (step_id, kind, _) in enumerate(shapes):
        key = key_of[step_id]
        box = gid_of.get(key)
        if box is None:
            node_of[step_id] = step_id
            node = DrawnNode(node_id=step_id, kind=kind, name=step_id, members=(step_id,), is_group=False)
            nodes.append((key[2], position, node))
        elif box not in node_of:  # the group's first step: the group sits here
            node_of[step_id] = node_of[box] = box
            node = DrawnNode(node_id=box, kind=kind, name=key[1], members=tuple(members[key]), is_group=True)
            nodes.append((key[2], position, node))
        else:
            node_of[step_id] = box
    for gid in gid_of.values():  # only steps are keys of node_of
        del node_of[gid]
    nodes.sort(key=lambda entry: (entry[0], entry[1]))
    edges: dict[tuple[str, str], None] = {}
    for step_id, _, upstream in shapes:
        b = node_of[step_id]
        for u in upstream:
            a = node_of.get(u)
            if a is not None:
                edges[(a, b)] = None
    return Drawing(nodes=tuple(entry[2] for entry in nodes), edges=tuple(edges), node_of=node_of)
