"""Tables that stay readable on a narrow terminal.

A table is given its columns in order of reading, each saying whether its text may wrap (a reason, a path) and when
it may be hidden. Names and numbers never fold: such a column is as wide as its widest value (its header may wrap
between words). A wrapping column keeps at least ``min_width`` characters. When the whole does not fit the
terminal, the columns that matter least are hidden one by one (``hide`` 1 first, then 2, ...); ``--wide`` shows
every column at full width instead, past the terminal's edge if need be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_READABLE = 30    # the narrowest a column of sentences stays readable in


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    wrap: bool = False       # sentences and paths: may wrap between words, down to min_width
    hide: int = 0            # 0: always shown; otherwise hidden in this order (1 first) when the table is too wide
    min_width: int = _READABLE


@dataclass
class Fitted:
    """A table ready to print, the headers it hides, and the width it takes (past the terminal's only when wide)."""

    table: object            # rich.table.Table
    hidden: list[str]
    width: int

    def print(self, console) -> None:
        fits = console.width
        console.width = max(fits, self.width)     # rich clamps a print's width to the console's
        try:
            console.print(self.table)
        finally:
            console.width = fits
        if self.hidden:
            console.print(f"[dim]Not shown, to fit {console.width} columns: {', '.join(self.hidden)} "
                          "(--wide shows every column).[/dim]")


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *, width: int, wide: bool = False,
              **table_options) -> Fitted:
    """A rich table of ``rows`` (cells in rich markup) that fits ``width`` characters, or every column with
    ``wide``. ``table_options`` go to :class:`rich.table.Table` (title, caption, ...).

    When even the columns that are never hidden do not fit, the wrapping ones give way below ``min_width``.
    """
    from rich.table import Table

    needed = [_needed(column, [row[i] for row in rows], wide=wide) for i, column in enumerate(columns)]
    shown = list(range(len(columns)))
    droppable = sorted((c.hide, i) for i, c in enumerate(columns) if c.hide)
    while not wide and _total(needed, shown) > width and droppable:
        shown.remove(droppable.pop(0)[1])
    # Room to spare: headers on one line.
    whole = [max(n, len(c.header)) if not c.wrap else n for n, c in zip(needed, columns, strict=True)]
    if wide or _total(whole, shown) <= width:
        needed = whole
    squeezed = not wide and _total(needed, shown) > width   # then rich narrows the wrapping columns
    table = Table(**{"title_justify": "left", **table_options})
    for i in shown:
        column = columns[i]
        if column.wrap:
            table.add_column(column.header, justify=column.justify, min_width=None if squeezed else needed[i],
                             overflow="fold", width=needed[i] if wide else None)
        else:
            table.add_column(column.header, justify=column.justify, width=needed[i], overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return Fitted(table, [columns[i].header for i in range(len(columns)) if i not in shown],
                  _total(needed, shown) if wide else min(width, _total(needed, shown)))


def _needed(column: Column, cells: Sequence[str], *, wide: bool) -> int:
    from rich.cells import cell_len
    from rich.text import Text

    header_word = max((len(word) for word in column.header.split()), default=1)
    value = max((cell_len(line) for cell in cells for line in Text.from_markup(cell).plain.splitlines()),
                default=0)
    if column.wrap and not wide:
        return max(header_word, min(column.min_width, value))
    return max(header_word, value, 1)


def _total(needed: Sequence[int], shown: Sequence[int]) -> int:
    """Characters a table with the default box takes: each column, a space either side, and the rules."""
    return sum(needed[i] for i in shown) + 3 * len(shown) + 1
