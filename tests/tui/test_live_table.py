"""The live table on its own: rows by key, the cursor staying on its row, the log's newest
rows coming in at the top, and the work an update costs (only the rows that changed)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from widgets.live_table import LiveTable, same_cells

COLUMNS = (("name", "Name"), ("note", "Note", 12))


class TableApp(App[None]):
    CSS = "LiveTable { height: 8; }"

    def __init__(self, wrap: bool = False) -> None:
        super().__init__()
        self.wrap = wrap

    def compose(self) -> ComposeResult:
        yield LiveTable(COLUMNS, id="table", wrap=self.wrap)

    @property
    def table(self) -> LiveTable:
        return self.query_one(LiveTable)


def rows(*names: str) -> list[tuple[str, tuple[Any, ...]]]:
    return [(name, (name, Text(f"note {name}"))) for name in names]


def lines(table: LiveTable) -> list[str]:
    return [table.render_line(y).text.rstrip() for y in range(8)]


async def test_sync_keeps_the_cursor_on_its_row_when_rows_come_and_go() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.sync(rows("a", "b", "c", "d"))
        table.move_cursor(row=2)
        assert table.keys[table.cursor_row] == "c"
        table.sync(rows("z", "a", "c", "d"))  # b gone, z new at the top
        await pilot.pause()
        assert table.keys == ["z", "a", "c", "d"]
        assert table.keys[table.cursor_row] == "c"
        assert lines(table)[0].split() == ["Name", "Note"]
        assert lines(table)[1].split()[0] == "z"


async def test_an_unchanged_row_is_neither_compared_nor_drawn_again() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        first = rows("a", "b")
        table.sync(first)
        await pilot.pause()
        painted = {key: table._rows[key].version for key in table.keys}
        table.sync([first[0], ("b", ("b", Text("changed")))])
        assert table._rows["a"].version == painted["a"]
        assert table._rows["b"].version != painted["b"]
        assert "changed" in lines(table)[2]


def test_a_recoloured_cell_counts_as_a_change() -> None:
    # Text equality ignores the base style: a theme switch must still repaint the cell.
    assert not same_cells(("x", Text("LONG", style="green")), ("x", Text("LONG", style="blue")))
    assert same_cells(("x", Text("LONG", style="green")), ("x", Text("LONG", style="green")))


async def test_newest_rows_come_in_at_the_top_and_the_oldest_go() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.sync(rows("3", "2", "1"))
        table.add_newest(rows("5", "4"), keep=4)
        await pilot.pause()
        assert table.keys == ["5", "4", "3", "2"]
        assert table.cursor_row == 0  # at the top, the cursor follows the newest row
        assert lines(table)[1].split()[0] == "5"


async def test_a_trader_reading_an_older_row_keeps_it_under_the_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.sync(rows(*[str(n) for n in range(20, 0, -1)]))
        table.move_cursor(row=5)
        reading = table.keys[table.cursor_row]
        table.add_newest(rows("22", "21"), keep=20)
        await pilot.pause()
        assert table.keys[table.cursor_row] == reading
        assert table.row_count == 20


async def test_older_rows_fill_in_at_the_bottom() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.sync(rows("4", "3"))
        table.add_oldest(rows("2", "1"))
        await pilot.pause()
        assert table.keys == ["4", "3", "2", "1"]


async def test_wrapped_rows_are_as_tall_as_their_longest_cell() -> None:
    app = TableApp(wrap=True)
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.sync([("a", ("a", Text("one two three four five"))), ("b", ("b", Text("x")))])
        await pilot.pause()
        shown = lines(table)
        assert shown[1].split() == ["a", "one", "two"]
        assert shown[2].split() == ["three", "four"]
        assert shown[3].split() == ["five"]
        assert shown[4].split() == ["b", "x"]


async def test_keys_move_the_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.sync(rows(*[str(n) for n in range(30)]))
        table.focus()
        await pilot.press("down", "down")
        assert table.cursor_row == 2
        await pilot.press("end")
        assert table.cursor_row == 29
        assert table.scroll_y > 0  # the cursor was scrolled into view
        await pilot.press("home")
        assert table.cursor_row == 0 and table.scroll_y == 0


async def test_an_empty_table_shows_its_header() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        assert lines(app.table)[0].split() == ["Name", "Note"]
