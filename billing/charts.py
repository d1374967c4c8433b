"""Small server-rendered SVG charts for the billing pages (no JavaScript, no front-end build).

`units_chart` draws a tenant's billed quantity over time as a step line (a quantity written to
the PSA holds until the next write), with a dot and a tooltip per write, and optionally the
usage the host product reported as a dashed line. Every piece of text goes through
`format_html`/`escape`: labels come from PSA and tenant names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import now as tz_now

WIDTH, HEIGHT = 360, 150
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 42, 12, 12, 26


@dataclass(frozen=True)
class Write:
    """One quantity written: when, from what, to what, and a short note for the tooltip."""

    at: datetime
    before: int | None
    after: int
    note: str = ""


@dataclass(frozen=True)
class Reading:
    """One usage count the host product reported."""

    at: datetime
    units: int


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _nice_max(value: int) -> int:
    """A round top for the y axis at or above `value`."""
    if value <= 5:
        return 5
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 2.5, 5, 10):
        top = int(step * magnitude)
        if top >= value:
            return top
    return value


def units_chart(
    writes: Sequence[Write],
    readings: Sequence[Reading] = (),
    *,
    title: str = "Units over time",
    until: datetime | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> SafeString:
    """The SVG (safe to put in a template as is); an empty string when there is nothing to draw."""
    writes = sorted(writes, key=lambda w: w.at)
    readings = sorted(readings, key=lambda r: r.at)
    if not writes and not readings:
        return mark_safe("")
    moments = [w.at for w in writes] + [r.at for r in readings]
    start = min(moments)
    end = max([*moments, until or tz_now()])
    span = max((end - start).total_seconds(), 1.0)
    values = [w.after for w in writes] + [w.before for w in writes if w.before is not None] + [r.units for r in readings]
    top = _nice_max(max(values + [0]))
    plot_w, plot_h = width - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM

    def x(moment: datetime) -> float:
        return round(PAD_LEFT + plot_w * (moment - start).total_seconds() / span, 1)

    def y(units: int) -> float:
        return round(PAD_TOP + plot_h * (1 - units / top), 1)

    parts: list[str] = []
    # Axes and the grid: 0, half and top.
    for units in (0, top // 2, top):
        parts.append(format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" class="grid"/>'
            '<text x="{}" y="{}" class="axis" text-anchor="end">{}</text>',
            PAD_LEFT, y(units), width - PAD_RIGHT, y(units), PAD_LEFT - 4, y(units) + 4, units,
        ))  # fmt: skip
    parts.append(format_html(
        '<text x="{}" y="{}" class="axis">{}</text><text x="{}" y="{}" class="axis" text-anchor="end">{}</text>',
        PAD_LEFT, height - 8, start.strftime("%Y-%m-%d"), width - PAD_RIGHT, height - 8, end.strftime("%Y-%m-%d"),
    ))  # fmt: skip

    if readings:
        points = []
        for reading in readings:
            if points:
                points.append(f"{x(reading.at)},{points[-1].split(',')[1]}")
            points.append(f"{x(reading.at)},{y(reading.units)}")
        points.append(f"{x(end)},{y(readings[-1].units)}")
        parts.append(format_html('<polyline points="{}" class="usage"/>', " ".join(points)))

    if writes:
        first = writes[0]
        points = [f"{x(first.at)},{y(first.before if first.before is not None else first.after)}"]
        for write in writes:
            points.append(f"{x(write.at)},{points[-1].split(',')[1]}")
            points.append(f"{x(write.at)},{y(write.after)}")
        points.append(f"{x(end)},{y(writes[-1].after)}")
        parts.append(format_html('<polyline points="{}" class="written"/>', " ".join(points)))
        for write in writes:
            change = f"{write.before} → {write.after}" if write.before is not None else f"{write.after}"
            tip = f"{_fmt(write.at)}: {change}" + (f" ({write.note})" if write.note else "")
            parts.append(format_html(
                '<circle cx="{}" cy="{}" r="3.5" class="write"><title>{}</title></circle>', x(write.at), y(write.after), tip,
            ))  # fmt: skip

    legend = "Quantity written to the PSA" + (" (solid) and usage reported (dashed)" if readings and writes else "")
    if readings and not writes:
        legend = "Usage reported (dashed); nothing written to the PSA yet"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="units-chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}: {escape(legend)}">'
        f"<title>{escape(title)}</title><desc>{escape(legend)}</desc>{''.join(parts)}</svg>"
    )
    return mark_safe(svg)  # noqa: S308 - every interpolated text above is escaped
