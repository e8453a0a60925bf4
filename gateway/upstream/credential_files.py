"""Reading the files that credentials come from (a Google key, an Azure certificate, a federated
token): again on each refresh, so that a rotated file is picked up, and failing with a reason
that is safe to log."""

from __future__ import annotations

from pathlib import Path

from gateway.upstream.refresh import CredentialError


def read_source_file(path: Path) -> bytes:
    """A credentials file's bytes. Raises CredentialError saying why it cannot be read (the OS's
    reason, never any of its content)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read {path}: {exc.strerror}") from None
