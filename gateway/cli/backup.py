"""`tollway db backup FILE`: an online, consistent copy of the SQLite store while the gateway
serves. sqlite3's backup API copies page by page under SQLite's own locking, so writers in the
gateway keep working and the copy is a snapshot of one moment. PostgreSQL has pg_dump for this.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store import sqlite_path


class BackupError(Exception):
    pass


def backup_sqlite(database_url: str, destination: Path) -> int:
    """Copy the SQLite store to `destination` (a new file); returns the pages copied."""
    if not database_url.startswith("sqlite:"):
        raise BackupError(
            "online backup is for the SQLite store; for PostgreSQL use pg_dump "
            '(e.g. pg_dump -Fc -f tollway.dump "$TOLLWAY_DATABASE_URL")'
        )
    source_path = sqlite_path(database_url)
    if not Path(source_path).is_file():
        raise BackupError(f"no SQLite store at {source_path}")
    if destination.exists():
        raise BackupError(f"{destination} exists; choose a new file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    pages = 0

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total

    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(destination)
    try:
        # 1024 pages per step: writers get the database back between steps.
        source.backup(target, pages=1024, progress=progress)
        check = target.execute("PRAGMA integrity_check").fetchone()
        if check is None or check[0] != "ok":
            raise BackupError(f"the copy failed its integrity check: {check}")
    finally:
        target.close()
        source.close()
    return pages
