"""The static picture of a run: an SVG of the DAG coloured by state, and the event table.

Shown where no live widget runs (nbconvert HTML, GitHub's preview, terminal IPython) and
stored next to the widget as its fallback. Inline styles only: those renderers drop
``<style>`` blocks.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from evkit.model import STEP_STATES, RunProgress
from evkit.notebook import viewmodel
from evkit.notebook.grouping import Drawing, DrawnNode, group_steps, group_text
from evkit.notebook.layout import DOT_MAX_NODES, NODE_HEIGHT, NODE_WIDTH, Layout, compute_layout

_MAX_SVG_HEIGHT_PX = 600
_FONT = "font-family:sans-serif;font-size:12px"

MAX_DRAWN_STEPS = DOT_MAX_NODES
"""DAGs that draw as more boxes than this, after grouping, get state counts instead of a
drawing: an SVG of thousands of boxes is big to store in the notebook and slow to make,
and no one reads it in a static page."""


def edge_path(start: tuple[float, float], end: tuple[float, float]) -> str:
    """The SVG path of an edge: an S-curve from one box's right side to the next's left.

    The widget's JavaScript draws the same curve.
    """
    x1, y1 = start[0] + NODE_WIDTH / 2, start[1]
    x2, y2 = end[0] - NODE_WIDTH / 2, end[1]
    mid = (x1 + x2) / 2
    return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def render_svg(progress: RunProgress, layout: Layout, drawing: Drawing | None = None) -> str:
    """The DAG as an SVG element, each node filled with its state's colour.

    Args:
        progress: The run.
        layout: Where each box is (of the steps, or of ``drawing``'s boxes).
        drawing: The grouped boxes (:func:`evkit.notebook.grouping.group_steps`), whose
            group nodes show their name, size and state counts.
    """
    states = progress.states
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="evkit-dag" viewBox="0 0 {layout.width:.0f} '
        f'{layout.height:.0f}" width="{layout.width:.0f}" style="max-width:100%;height:auto;'
        f'max-height:{_MAX_SVG_HEIGHT_PX}px">'
    ]
    # Shared attributes sit on the groups, not on each of the (maybe hundreds of) shapes.
    parts.append('<g fill="none" stroke="#888">')
    parts += [f'<path d="{edge_path(layout.positions[a], layout.positions[b])}"/>' for a, b in layout.edges]
    parts.append('</g><g stroke="#555" font-family="sans-serif" font-size="12" text-anchor="middle">')
    groups = {node.node_id: node for node in drawing.nodes if node.is_group} if drawing else {}
    for node in viewmodel.node_boxes(layout, progress.shapes, progress.labels):
        group = groups.get(str(node["id"]))
        if group is not None:
            parts.append(_group_svg(group, layout.positions[group.node_id], progress))
            continue
        step_id = escape(str(node["id"]))
        state = states.get(str(node["id"]), "pending")
        cx, cy = float(node["x"]), float(node["y"])  # type: ignore[arg-type]
        radius = 12 if node["kind"] == "event" else 3
        parts.append(
            f'<g data-step="{step_id}" data-state="{state}"><title>{step_id}: {state}</title>'
            f'<rect x="{cx - NODE_WIDTH / 2:.1f}" y="{cy - NODE_HEIGHT / 2:.1f}" width="{NODE_WIDTH:.0f}" '
            f'height="{NODE_HEIGHT:.0f}" rx="{radius}" fill="{viewmodel.STATE_COLORS[state]}"/>'
            f'<text x="{cx:.1f}" y="{cy + 4:.1f}" stroke="none">{escape(str(node["label"]))}</text></g>'
        )
    parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _group_svg(group: DrawnNode, centre: tuple[float, float], progress: RunProgress) -> str:
    # The widget draws a group alike (paintGroup in run_widget.js): its name and size, its
    # two biggest state counts, and a bar of every state's share.
    counts = Counter(progress.states.get(step_id, "pending") for step_id in group.members)
    order = [state for state in STEP_STATES if counts[state]]
    biggest = sorted(order, key=lambda state: -counts[state])
    short = ", ".join(f"{counts[state]:,} {state}" for state in biggest[:2]) + (
        ", …" if len(biggest) > 2 else ""
    )
    full = ", ".join(f"{counts[state]:,} {state}" for state in order)
    cx, cy = centre
    x, y = cx - NODE_WIDTH / 2, cy - NODE_HEIGHT / 2
    radius = 12 if group.kind == "event" else 3
    title = f"{group.name} ×{len(group.members):,}: {full}"
    bar, left = [], x + 1
    for state in order:
        width = (NODE_WIDTH - 2) * counts[state] / len(group.members)
        bar.append(
            f'<rect x="{left:.1f}" y="{y + NODE_HEIGHT - 5:.1f}" width="{width:.1f}" height="4" '
            f'stroke="none" fill="{viewmodel.STATE_COLORS[state]}"/>'
        )
        left += width
    return (
        f'<g data-group="{escape(group.node_id)}" data-count="{len(group.members)}" '
        f'data-counts="{escape(full)}"><title>{escape(title)}</title>'
        f'<rect x="{x + 4:.1f}" y="{y - 4:.1f}" width="{NODE_WIDTH:.0f}" height="{NODE_HEIGHT:.0f}" '
        f'rx="{radius}" fill="#ccc"/>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_WIDTH:.0f}" height="{NODE_HEIGHT:.0f}" '
        f'rx="{radius}" fill="#eee"/>{"".join(bar)}'
        f'<text x="{cx:.1f}" y="{cy - 2:.1f}" stroke="none" font-size="11" font-weight="bold">'
        f"{escape(group_text(group.name, len(group.members)))}</text>"
        f'<text x="{cx:.1f}" y="{cy + 10:.1f}" stroke="none" font-size="9">{escape(short)}</text></g>'
    )


def render_counts(progress: RunProgress) -> str:
    """How many steps are in each state, in the states' order (for DAGs too big to draw)."""
    counts = Counter(progress.states.values())
    cells = "".join(
        f'<span style="background:{viewmodel.STATE_COLORS[state]};padding:0 4px;margin-right:4px">'
        f"{counts[state]:,} {state}</span>"
        for state in STEP_STATES
        if counts[state]
    )
    total = len(progress.shapes)
    return f'<div class="evkit-counts" style="{_FONT};margin:4px 0">{total:,} steps: {cells}</div>'


def render_table(progress: RunProgress, *, now: float) -> str:
    """The progress's page of event steps as an HTML table (empty when the run has none).

    When the run has more event steps than the page, a last line says how many more.
    """
    rows = viewmodel.event_rows(progress, now=now)
    if not rows:
        return ""
    head = [
        "step",
        "label",
        "listener",
        "args",
        "state",
        "attempts",
        *viewmodel.EVENT_TIME_COLUMNS,
        "time left",
    ]
    out = [
        f'<table class="evkit-events" border="1" cellpadding="3" style="border-collapse:collapse;{_FONT}">'
    ]
    out.append("<tr>" + "".join(f"<th>{name}</th>" for name in head))
    out.append("</tr>")
    for row in rows:
        times = row["times"]
        assert isinstance(times, dict)
        state = str(row["state"])
        values = [
            escape(str(row["step"])),
            escape(str(row["label"])),
            escape(str(row["listener"])),
            f"<code>{escape(_clip(str(row['args'])))}</code>",
            f'<span style="background:{viewmodel.STATE_COLORS[state]};padding:0 4px">{state}</span>',
            str(row["attempts"]),
            *(escape(str(times.get(column, ""))) for column in viewmodel.EVENT_TIME_COLUMNS),
            escape(viewmodel.time_left_text(row["time_left"], row["deadline_kind"])),  # type: ignore[arg-type]
        ]
        out.append(f'<tr data-step="{escape(str(row["step"]))}">' + "".join(f"<td>{v}</td>" for v in values))
        out.append("</tr>")
    out.append("</table>")
    hidden = progress.event_total - len(rows)
    if hidden > 0:
        out.append(
            f'<div class="evkit-more" style="{_FONT}">… and {hidden:,} more event steps '
            f'(<code>evkit.sql("SELECT * FROM event_log WHERE workflow_id = '
            f"'{escape(progress.workflow_id)}'\")</code> lists them all)</div>"
        )
    return "".join(out)


def render_html(progress: RunProgress, layout: Layout | None, *, now: float) -> str:
    """The whole static picture: a header line, the DAG (or state counts) and the event table.

    Args:
        progress: The run, with the page of event steps to list.
        layout: Where to draw each step (unused when the DAG draws grouped: the groups
            are laid out here); ``None`` when the DAG has more than
            :data:`MAX_DRAWN_STEPS` steps and does not group (only counts are shown).
        now: The clock's time, for timers' time left.
    """
    error = f" — {escape(progress.error)}" if progress.error else ""
    header = (
        f'<div style="{_FONT}"><b>evkit run {escape(progress.workflow_id)}</b>: '
        f"{progress.status.value}{error}</div>"
    )
    drawing = group_steps(progress.shapes)
    if drawing.grouped and len(drawing.nodes) <= MAX_DRAWN_STEPS:
        # Pure-Python layers: a grouped DAG is small, and this may run on the engine loop.
        grouped = compute_layout(drawing.as_steps(), engine="layers")
        dag = render_svg(progress, grouped, drawing) + render_counts(progress)
    elif layout is not None and not drawing.grouped:
        dag = render_svg(progress, layout)
    else:
        dag = render_counts(progress)
    return f'<div class="evkit-static">{header}{dag}{render_table(progress, now=now)}</div>'


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
