"""A table for data that changes many times a second: the trader's positions, orders, rules
and enforcement log.

Textual's `DataTable` forgets every rendered cell whenever any cell changes (its render caches
are keyed by a global update count), so each update repainted every visible cell through Rich
(~50 ms a frame for the rules table), and removing or inserting rows is O(rows) per row with a
layout of the screen each time. This table keeps what each row looks like until that row
changes: an update costs the rows that changed, a paint costs the lines that changed, and new
rows go in at the top or the bottom without touching the others. It looks and moves like a
`DataTable` with a row cursor and zebra stripes (the same theme variables, in riskman.tcss).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

Row = tuple[str, tuple[Any, ...]]
PADDING = 1
"""Blank cells either side of a cell's text (as `DataTable`'s default `cell_padding`)."""


def as_text(cell: Any) -> Text:
    """A cell as Rich text (`str`, `Text`, or anything with `__rich__` returning `Text`)."""
    if isinstance(cell, Text):
        return cell
    if isinstance(cell, str):
        return Text(cell)
    rich = getattr(cell, "__rich__", None)
    if rich is not None:
        rendered = rich()
        if isinstance(rendered, Text):
            return rendered
    return Text(str(cell))


def same_cells(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """Whether two rows look the same. (`Text.__eq__` compares the text and its spans, not
    its base style: a theme switch that only recolours a cell would go unseen.)"""
    if old is new:
        return True
    if len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        if isinstance(a, Text) and isinstance(b, Text):
            if a.style != b.style or a.justify != b.justify or a != b:
                return False
        elif a != b:
            return False
    return True


@dataclass(slots=True)
class _Row:
    key: str
    cells: tuple[Any, ...]
    texts: tuple[Text, ...]
    widths: tuple[int, ...]
    """Each cell's widest line, in cells."""
    height: int
    version: int


@dataclass(frozen=True, slots=True)
class _Styles:
    """The styles of one paint (resolved once per paint, not per line)."""

    base: Style
    header: Style
    even: Style
    odd: Style
    cursor: Style
    cursor_post: Style
    hover: Style
    state: tuple[object, ...]


class LiveTable(ScrollView, can_focus=True):
    """Rows by key, a row cursor, zebra stripes, a fixed header; `wrap` lets the columns with
    a fixed width wrap their text (the row is as tall as its tallest cell)."""

    ALLOW_SELECT = False  # as DataTable: the cursor picks rows, a drag does not select text
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "live-table--header",
        "live-table--even-row",
        "live-table--odd-row",
        "live-table--cursor",
        "live-table--hover",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First row", show=False),
        Binding("end,ctrl+end", "last", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]
    DEFAULT_CSS = """
    LiveTable {
        height: auto;
        max-height: 100%;
    }
    """

    def __init__(
        self,
        columns: Sequence[tuple[str, str] | tuple[str, str, int]],
        *,
        id: str | None = None,
        classes: str | None = None,
        wrap: bool = False,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._labels = tuple(Text(column[1]) for column in columns)
        self._fixed: tuple[int | None, ...] = tuple(
            column[2] if len(column) == 3 else None for column in columns
        )
        self._wrap = wrap
        self._rows: dict[str, _Row] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._offsets: list[int] = [0]
        """Line offset of each row (and the total after the last)."""
        self._widths: list[int] = [0] * len(columns)
        self._widths_version = 0
        self._counts: list[Counter[int]] = [Counter() for _ in columns]
        """How many rows have each cell width, per column (the widest is the column's)."""
        self._version = 0
        self._raw: dict[tuple[str, int], tuple[tuple[int, int], list[Segment]]] = {}
        """Each row line's segments before the row's style, by (key, line)."""
        self._strips: dict[
            tuple[str, int], dict[tuple[int, bool, bool], tuple[tuple[object, ...], Strip]]
        ] = {}
        """Each row line as painted, by (key, line), then by (stripe, cursor, hover)."""
        self._header: tuple[tuple[object, ...], Strip] | None = None
        self._styles: _Styles | None = None
        self._cursor = 0
        self._hover: int | None = None

    def on_mount(self) -> None:
        self._resize()  # the header shows before any row does

    # --- what is shown ---------------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def cells(self, key: str) -> tuple[Any, ...]:
        return self._rows[key].cells

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    def move_cursor(self, *, row: int, scroll: bool = True) -> None:
        """Put the cursor on a row (clamped to the rows there are)."""
        row = max(0, min(row, len(self._order) - 1))
        if row == self._cursor:
            return
        self._refresh_row(self._cursor)
        self._cursor = row
        self._refresh_row(row)
        if scroll:
            self._scroll_to_cursor()

    # --- updates ---------------------------------------------------------------------------

    def sync(self, rows: Sequence[Row]) -> bool:
        """Show exactly `rows`, in their order; returns whether anything changed. A row whose
        cells are the very same tuple as before is not even compared."""
        wanted = [key for key, _ in rows]
        order_changed = wanted != self._order
        cursor_key = self._order[self._cursor] if self._cursor < len(self._order) else None
        changed = order_changed
        keep = set(wanted) if order_changed else None
        if keep is not None:
            for key in [key for key in self._rows if key not in keep]:
                self._drop(key)
        refresh: list[str] = []
        moved = order_changed
        for key, cells in rows:
            row = self._rows.get(key)
            if row is not None and same_cells(row.cells, cells):
                continue
            # A row that grows or shrinks moves the rows below it: repaint them all.
            moved |= self._put(key, cells)
            changed = True
            refresh.append(key)
        if not changed:
            return False
        if order_changed:
            self._order = wanted
            self._reindex()
            if cursor_key in self._index:
                self._cursor = self._index[cursor_key]
            self._cursor = max(0, min(self._cursor, len(self._order) - 1))
        else:
            self._reoffset()
        if moved:
            self.refresh()
        else:
            for key in refresh:
                self._refresh_row(self._index[key])
        self._resize()
        return True

    def add_newest(self, rows: Sequence[Row], keep: int) -> None:
        """Put `rows` (newest first) above the rows shown, and drop the oldest beyond `keep`.

        When the trader has moved the cursor or scrolled down, the row under the cursor and
        the lines in view stay where they are; at the top, the newest rows come into view.
        """
        if not rows:
            return
        following = self._cursor == 0 and self.scroll_y == 0
        for key, _ in rows:
            if key in self._rows:
                self._drop(key)
        for key, cells in rows:
            self._put(key, cells)
        added = [key for key, _ in rows]
        new = set(added)
        self._order = added + [key for key in self._order if key not in new]
        for key in self._order[keep:]:
            self._drop(key)
        del self._order[keep:]
        self._reindex()
        self._resize()
        if not following:
            self._cursor = min(self._cursor + len(added), len(self._order) - 1)
            self.scroll_to(y=self.scroll_y + self._offsets[len(added)], animate=False)
        self.refresh()

    def add_oldest(self, rows: Sequence[Row]) -> None:
        """Put `rows` (newest first) below the rows shown (filling a long log a slice at a
        time, so that no single frame holds the event loop for long)."""
        fresh = [(key, cells) for key, cells in rows if key not in self._rows]
        if not fresh:
            return
        first = len(self._order)
        for key, cells in fresh:
            self._put(key, cells)
            self._order.append(key)
        self._reindex(first)
        self.refresh()
        self._resize()

    def _put(self, key: str, cells: tuple[Any, ...]) -> bool:
        """Store a row's cells; returns whether an existing row changed height."""
        old = self._rows.get(key)
        texts = tuple(as_text(cell) for cell in cells)
        widths = tuple(max(cell_len(line) for line in text.plain.split("\n")) for text in texts)
        self._version += 1
        row = _Row(key, cells, texts, widths, self._height(texts, widths), self._version)
        self._rows[key] = row
        for counts, width in zip(self._counts, widths, strict=True):
            counts[width] += 1
        if old is None:
            return False
        self._uncount(old)
        for line in range(row.height, old.height):
            self._raw.pop((key, line), None)
            self._strips.pop((key, line), None)
        return old.height != row.height

    def _drop(self, key: str) -> None:
        row = self._rows.pop(key)
        for line in range(row.height):
            self._raw.pop((key, line), None)
            self._strips.pop((key, line), None)
        self._uncount(row)

    def _uncount(self, row: _Row) -> None:
        for counts, width in zip(self._counts, row.widths, strict=True):
            counts[width] -= 1
            if not counts[width]:
                del counts[width]

    def _height(self, texts: tuple[Text, ...], widths: tuple[int, ...]) -> int:
        if not self._wrap:
            return 1
        height = 1
        for text, width, fixed in zip(texts, widths, self._fixed, strict=True):
            if fixed is not None and (width > fixed or "\n" in text.plain):
                height = max(height, len(text.wrap(self._console, fixed)))
        return height

    def _reindex(self, start: int = 0) -> None:
        order = self._order
        index = self._index
        if start == 0:
            index.clear()
        for position in range(start, len(order)):
            index[order[position]] = position
        self._reoffset()

    def _reoffset(self) -> None:
        offsets = [0]
        total = 0
        rows = self._rows
        for key in self._order:
            total += rows[key].height
            offsets.append(total)
        self._offsets = offsets

    def _resize(self) -> None:
        self._measure()
        width = sum(self._widths) + 2 * PADDING * len(self._widths)
        size = Size(width, self._offsets[-1] + 1)
        old = self.virtual_size
        if size == old:
            return
        if self.container_size and not self._follows(size, old):
            # The table's own size does not follow its rows (a log at its 500 rows gains and
            # loses a line or two with every batch; a column widens): update the scrollbars,
            # as Textual does after a layout, without a layout of the whole screen.
            self.set_reactive(LiveTable.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size

    def _follows(self, size: Size, old: Size) -> bool:
        """Whether the widget's own size (with `height: auto` or `width: auto`) changes."""
        height, width = self.styles.height, self.styles.width
        return (size.height != old.height and (height is None or height.is_auto)) or (
            size.width != old.width and width is not None and width.is_auto
        )

    def _measure(self) -> None:
        widths = [
            fixed if fixed is not None else max(label.cell_len, max(counts, default=0))
            for label, counts, fixed in zip(self._labels, self._counts, self._fixed, strict=True)
        ]
        if widths != self._widths:
            self._widths = widths
            self._widths_version += 1
            self._raw.clear()
            self._strips.clear()
            self._header = None
            self.refresh()

    @property
    def _console(self) -> Console:
        return self.app.console

    # --- cursor and scrolling --------------------------------------------------------------

    def _viewport_height(self) -> int:
        # From the last layout's sizes: `Widget.size` would ask the compositor for a region.
        return max(1, self.container_size.height - self.scrollbar_size_horizontal - 1)

    def _scroll_to_cursor(self) -> None:
        if not self._order:
            return
        top = self._offsets[self._cursor]
        bottom = self._offsets[self._cursor + 1]
        view = self._viewport_height()
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False)
        elif bottom > self.scroll_y + view:
            self.scroll_to(y=bottom - view, animate=False)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self._cursor + 1)

    def action_page_up(self) -> None:
        target = max(0, self._offsets[self._cursor] - self._viewport_height())
        self.move_cursor(row=bisect_right(self._offsets, target) - 1)

    def action_page_down(self) -> None:
        target = self._offsets[self._cursor] + self._viewport_height()
        self.move_cursor(row=bisect_right(self._offsets, target) - 1)

    def action_first(self) -> None:
        self.scroll_to(x=0, animate=False)
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def _row_at(self, y: int) -> int | None:
        """The row at a line of the widget's content (the header is line 0)."""
        if y < 1:
            return None
        line = y - 1 + round(self.scroll_y)
        row = bisect_right(self._offsets, line) - 1
        return row if 0 <= row < len(self._order) else None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and (row := self._row_at(offset.y)) is not None:
            self.move_cursor(row=row, scroll=False)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        offset = event.get_content_offset(self)
        self._set_hover(None if offset is None else self._row_at(offset.y))

    def on_leave(self) -> None:
        self._set_hover(None)

    def _set_hover(self, row: int | None) -> None:
        if row != self._hover:
            for old in (self._hover, row):
                if old is not None:
                    self._refresh_row(old)
            self._hover = row

    def _refresh_row(self, row: int) -> None:
        if 0 <= row < len(self._order):
            top = self._offsets[row]
            height = self._offsets[row + 1] - top
            width = max(self.virtual_size.width, self.container_size.width)
            self.refresh(Region(0, top - round(self.scroll_y) + 1, width, height))

    def notify_style_update(self) -> None:
        # Focus, hover, theme: the row styles are resolved again at the next paint.
        super().notify_style_update()
        self._styles = None
        self._header = None

    # --- painting --------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        self._styles = None  # resolved once per paint, at the first line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        styles = self._paint_styles()
        scroll_x = round(self.scroll_x)
        width = self.container_size.width
        if y == 0:
            strip, fill = self._header_strip(styles), styles.header
        else:
            line = y - 1 + round(self.scroll_y)
            row = bisect_right(self._offsets, line) - 1
            if not 0 <= row < len(self._order):
                return Strip.blank(width, styles.base)
            strip, fill = self._row_strip(row, line - self._offsets[row], styles)
        # As a DataTable with a row cursor: the row's style runs on to the widget's edge.
        return strip.crop(scroll_x, scroll_x + width).adjust_cell_length(width, fill)

    def _paint_styles(self) -> _Styles:
        if self._styles is None:
            get = self.get_component_rich_style
            cursor = get("live-table--cursor")
            self._styles = _Styles(
                base=self.rich_style,
                header=get("live-table--header"),
                even=get("live-table--even-row"),
                odd=get("live-table--odd-row"),
                cursor=cursor,
                cursor_post=Style.from_color(color=cursor.color),
                hover=get("live-table--hover"),
                state=(self.has_focus, self.app.theme, self._widths_version),
            )
        return self._styles

    def _header_strip(self, styles: _Styles) -> Strip:
        if self._header is not None and self._header[0] == styles.state:
            return self._header[1]
        segments: list[Segment] = []
        for label, width in zip(self._labels, self._widths, strict=True):
            segments += self._cell_lines(label, width, 1)[0]
        strip = Strip(Segment.apply_style(segments, styles.header)).simplify()
        self._header = (styles.state, strip)
        return strip

    def _row_strip(self, index: int, line: int, styles: _Styles) -> tuple[Strip, Style]:
        """A row line and the row's style."""
        key = self._order[index]
        row = self._rows[key]
        cursor = index == self._cursor
        hover = index == self._hover
        pre = styles.odd if index % 2 else styles.even
        if hover:
            pre += styles.hover
        if cursor:
            pre += styles.cursor
        # Both stripes of a line are kept: when rows come in at the top of the log, the rows
        # below change stripe, and change back with the next batch.
        look = (index % 2, cursor, hover)
        stamp = (row.version, styles.state)
        looks = self._strips.setdefault((key, line), {})
        cached = looks.get(look)
        if cached is not None and cached[0] == stamp:
            return cached[1], pre
        raw = self._raw_line(row, line)
        post = styles.cursor_post if cursor else None
        strip = Strip(Segment.apply_style(raw, pre, post)).simplify()
        if len(looks) > 4:
            looks.clear()
        looks[look] = (stamp, strip)
        return strip, pre

    def _raw_line(self, row: _Row, line: int) -> list[Segment]:
        """A row line's segments with each cell's own styles, before the row's style (every
        line of the row is made at the first miss: a wrapped cell is wrapped once)."""
        stamp = (row.version, self._widths_version)
        cached = self._raw.get((row.key, line))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        lines: list[list[Segment]] = [[] for _ in range(row.height)]
        for text, width in zip(row.texts, self._widths, strict=True):
            for number, part in enumerate(self._cell_lines(text, width, row.height)):
                lines[number] += part
        for number, segments in enumerate(lines):
            self._raw[(row.key, number)] = (stamp, segments)
        return lines[line]

    def _cell_lines(self, text: Text, width: int, height: int) -> list[list[Segment]]:
        """A cell's lines, padded to the column: wrapped when the row is taller than one line
        (`wrap`), cropped otherwise."""
        console = self._console
        if height > 1 and self._wrap:
            parts = list(text.wrap(console, width, justify=text.justify))
        else:
            part = text.copy()
            part.truncate(width)
            parts = [part]
        parts += [Text("")] * (height - len(parts))
        lines = []
        for part in parts[:height]:
            pad = max(0, width - part.cell_len)
            if part.justify == "right":
                left = pad
            elif part.justify == "center":
                left = pad // 2
            else:
                left = 0
            segments = [Segment(" " * (PADDING + left))]
            # `Text.render` leaves out the text's own (base) style: put it under the spans.
            own = console.get_style(part.style) if part.style else None
            segments += Segment.apply_style(
                [s for s in part.render(console, end="") if s.text], own
            )
            segments.append(Segment(" " * (PADDING + pad - left)))
            lines.append(segments)
        return lines
