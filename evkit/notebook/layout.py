"""Where each step of a run's DAG is drawn: graphviz ``dot`` if installed, else layers.

``"auto"`` uses layers above :data:`DOT_MAX_NODES` steps: dot's time grows fast with size,
and a big DAG reads as well in layers, which stay quick (docs/performance.md).

Pure computation on step ids and their upstream ids; it draws nothing. Coordinates are
pixels, left to right (sources on the left), origin top-left.

The live widget lays out in the browser with a JavaScript port of :func:`_layered`
(``layered`` in assets/run_widget.js); change both together, tests/ui/test_widget_js.py
checks that they place every node alike. The static picture uses this one.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from evkit.model import StepShape

NODE_WIDTH = 150.0
NODE_HEIGHT = 30.0
_GAP_X = 60.0
_GAP_Y = 14.0
_MARGIN = 10.0
_DOT_TIMEOUT_SECONDS = 10.0

DOT_MAX_NODES = 500
"""Above this many steps ``engine="auto"`` lays out with layers, not dot."""

LayoutEngine = Literal["auto", "dot", "layers"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Node centres and the canvas size of one drawing of a DAG.

    Attributes:
        positions: ``step_id -> (x, y)`` of each node's centre, in pixels.
        edges: ``(upstream_id, step_id)`` pairs between laid-out nodes.
        width: Canvas width in pixels.
        height: Canvas height in pixels.
        engine: ``"dot"`` or ``"layers"``: what computed it.
    """

    positions: Mapping[str, tuple[float, float]]
    edges: tuple[tuple[str, str], ...]
    width: float
    height: float
    engine: Literal["dot", "layers"]

    def covers(self, step_ids: Iterable[str]) -> bool:
        """True when every id in ``step_ids`` has a position (no re-layout needed)."""
        return all(step_id in self.positions for step_id in step_ids)


def compute_layout(steps: Sequence[tuple[str, Sequence[str]]], *, engine: LayoutEngine = "auto") -> Layout:
    """Lay out a DAG given as ``(step_id, upstream_ids)`` pairs in topological order.

    Args:
        steps: Each step with the ids of the steps it takes results from; upstream ids
            that are not in ``steps`` are ignored.
        engine: ``"dot"`` (needs the graphviz binary), ``"layers"`` (pure Python) or
            ``"auto"`` (dot when it is installed and works and the DAG has at most
            :data:`DOT_MAX_NODES` steps, else layers).

    Returns:
        The layout.

    Raises:
        FileNotFoundError: ``engine="dot"`` but the ``dot`` binary is not installed.
        RuntimeError: ``engine="dot"`` and dot failed.
    """
    ids = [step_id for step_id, _ in steps]
    known = set(ids)
    edges = tuple((up, step_id) for step_id, ups in steps for up in ups if up in known)
    if _layers_only(len(ids), engine):
        return _layered(ids, edges)
    dot = shutil.which("dot")
    if dot is None:
        if engine == "dot":
            raise FileNotFoundError(
                "compute_layout(engine='dot') needs graphviz's `dot` binary on PATH "
                "(apt-get install graphviz); use engine='layers' or 'auto' instead."
            )
        return _layered(ids, edges)
    try:
        return _dot(dot, ids, edges)
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
        if engine == "dot":
            raise
        return _layered(ids, edges)


def dot_would_be_used(step_count: int, *, engine: LayoutEngine = "auto") -> bool:
    """True when ``compute_layout`` would try dot for a DAG of ``step_count`` steps.

    Args:
        step_count: How many steps the DAG has.
        engine: The engine that would be asked for.
    """
    return not _layers_only(step_count, engine) and shutil.which("dot") is not None


def layout_for(shapes: Iterable[StepShape], *, engine: LayoutEngine = "auto") -> Layout:
    """Lay out steps given as ``(step_id, kind, upstream)`` (a ``RunProgress``'s shapes)."""
    return compute_layout([(step_id, upstream) for step_id, _, upstream in shapes], engine=engine)


def _layers_only(step_count: int, engine: LayoutEngine) -> bool:
    # Layers without trying dot: asked for, nothing to lay out, or too big for "auto".
    return engine == "layers" or step_count == 0 or (engine == "auto" and step_count > DOT_MAX_NODES)


def _dot(binary: str, ids: list[str], edges: tuple[tuple[str, str], ...]) -> Layout:
    # Nodes get synthetic names (n0, n1, ...) so step ids never need dot quoting, and a
    # fixed size so the boxes the browser draws are the boxes dot placed.
    names = {step_id: f"n{i}" for i, step_id in enumerate(ids)}
    lines = [
        "digraph G {",
        "rankdir=LR; nodesep=0.2; ranksep=0.6;",
        f"node [shape=box fixedsize=true width={NODE_WIDTH / 72:.3f} "
        f'height={NODE_HEIGHT / 72:.3f} label=""];',
    ]
    lines += [f"{names[step_id]};" for step_id in ids]
    lines += [f"{names[a]} -> {names[b]};" for a, b in edges]
    lines.append("}")
    result = subprocess.run(
        [binary, "-Tplain"],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        timeout=_DOT_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dot exited with {result.returncode}: {result.stderr.strip()[:200]}")
    by_name = {name: step_id for step_id, name in names.items()}
    positions: dict[str, tuple[float, float]] = {}
    graph_w = graph_h = 0.0
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "graph":
            graph_w, graph_h = float(parts[2]) * 72, float(parts[3]) * 72
        elif parts and parts[0] == "node":
            # dot's y axis points up; the browser's points down.
            x, y = float(parts[2]) * 72, float(parts[3]) * 72
            positions[by_name[parts[1]]] = (x + _MARGIN, graph_h - y + _MARGIN)
    if len(positions) != len(ids):
        raise ValueError(f"dot placed {len(positions)} of {len(ids)} nodes")
    return Layout(
        positions=positions,
        edges=edges,
        width=graph_w + 2 * _MARGIN,
        height=graph_h + 2 * _MARGIN,
        engine="dot",
    )


def _layered(ids: list[str], edges: tuple[tuple[str, str], ...]) -> Layout:
    # Plain loops, no generators: this runs for every big DAG shown. (The JS port in run_widget.js
    # must stay in step with this.)
    upstream: dict[str, list[str]] = {step_id: [] for step_id in ids}
    for a, b in edges:
        upstream[b].append(a)
    # Longest-path layering: a node sits one column right of its furthest upstream node.
    layer: dict[str, int] = {}
    columns: dict[int, list[str]] = {}
    for step_id in ids:  # ids are in topological order
        index = 0
        for u in upstream[step_id]:
            above = layer.get(u, -1) + 1
            if above > index:
                index = above
        layer[step_id] = index
        column = columns.get(index)
        if column is None:
            columns[index] = [step_id]
        else:
            column.append(step_id)
    # One barycentre pass left to right: each node near the mean row of its upstreams.
    row: dict[str, float] = {}
    for index in sorted(columns):
        column = columns[index]
        for position, step_id in enumerate(column):
            ups = upstream[step_id]
            if ups:
                total, count = 0.0, 0
                for u in ups:
                    r = row.get(u)
                    if r is not None:
                        total += r
                        count += 1
                row[step_id] = total / count if count else float(position)
            else:
                row[step_id] = float(position)
        column.sort(key=row.__getitem__)
        for position, step_id in enumerate(column):
            row[step_id] = float(position)
    tallest = max((len(c) for c in columns.values()), default=0)
    pitch_y = NODE_HEIGHT + _GAP_Y
    height = tallest * pitch_y - _GAP_Y + 2 * _MARGIN
    positions: dict[str, tuple[float, float]] = {}
    for index, column in columns.items():
        top = _MARGIN + (tallest - len(column)) * pitch_y / 2 + NODE_HEIGHT / 2
        x = _MARGIN + NODE_WIDTH / 2 + index * (NODE_WIDTH + _GAP_X)
        for position, step_id in enumerate(column):
            positions[step_id] = (x, top + position * pitch_y)
    width = len(columns) * (NODE_WIDTH + _GAP_X) - _GAP_X + 2 * _MARGIN if columns else 2 * _MARGIN
    return Layout(
        positions=positions, edges=edges, width=width, height=max(height, 2 * _MARGIN), engine="layers"
    )
