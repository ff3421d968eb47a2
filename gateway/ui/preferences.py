"""The pages' language, remembered per user (``ui.db``), so it follows a user from device to
device: the switch (``?lang=``) saves it for the signed-in user; a signed-in user's page is in
it unless the switch says otherwise (before the cookie and ``Accept-Language``)."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.sqlite import Store
from gateway.ui.i18n import LANGUAGES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS user_language (
    user_id INTEGER PRIMARY KEY,
    lang TEXT NOT NULL
);
"""


class LanguageStore(Store):
    """User id → language, cached in memory (one row per user who ever chose)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[int, str | None] = {}

    def language(self, user_id: int) -> str | None:
        """The language ``user_id`` chose last, or None."""
        with self._lock:
            if user_id in self._cache:
                return self._cache[user_id]
            row = self._db.execute("SELECT lang FROM user_language WHERE user_id = ?",
                                   (user_id,)).fetchone()
            lang = row[0] if row and row[0] in LANGUAGES else None
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[user_id] = lang
            return lang

    def choose(self, user_id: int, lang: str) -> None:
        """Remember ``lang`` for ``user_id`` (a language of the pages)."""
        if lang not in LANGUAGES:
            raise ValueError(f"not a language of the pages: {lang!r}")
        with self._lock:
            if self._cache.get(user_id) == lang:
                return
            with self._transaction() as db:
                db.execute("INSERT INTO user_language (user_id, lang) VALUES (?, ?) "
                           "ON CONFLICT(user_id) DO UPDATE SET lang = excluded.lang",
                           (user_id, lang))
            self._cache[user_id] = lang
