"""The console's contents: the one list of its sections (routes and navigation entries, in
navigation order) and of the overview's panels.

To add a page: write its module (a :class:`~parley.console.app.Section` of routes and nav
entries; see :mod:`parley.console.chats`) and add it to :data:`SECTIONS`. To add an
overview panel: a :class:`~parley.console.app.Panel` in :data:`PANELS`.

Every route is behind the login and, for a POST, the CSRF check
(:func:`parley.console.session.guard`): a form posts the ``csrf`` its page was rendered with
(``<input type="hidden" name="csrf" value="{{ csrf }}">``), a script sends it as the header
``X-CSRF-Token``. A handler raises :class:`~parley.console.app.PageError` for bad input (a
400 or 404 page) and answers with :meth:`~parley.console.app.Console.render`.
"""

from __future__ import annotations

from parley.console import chats, deadletters, overview, people, rejections, reports
from parley.console.app import Panel, Section

__all__ = ["PANELS", "SECTIONS"]

SECTIONS: tuple[Section, ...] = (
    overview.SECTION,
    chats.SECTION,
    people.SECTION,
    reports.SECTION,
    deadletters.SECTION,
    rejections.SECTION,
)

PANELS: tuple[Panel, ...] = (
    *overview.PANELS,
    rejections.PANEL,
)
