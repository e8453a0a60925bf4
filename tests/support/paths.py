"""Where the tests find the repository and their shared files: computed once, here, from this
module's place (tests/support/), so that no test depends on how deep it sits in tests/."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
TESTS: Final = REPO / "tests"
SUPPORT: Final = TESTS / "support"
# golden request bodies, answers, streams and error bodies of each provider, price excerpts, ...
FIXTURES: Final = SUPPORT / "fixtures"
# package.json and package-lock.json of the programs from the npm registry (tests/support/npm_clients.py)
NPM: Final = SUPPORT / "npm"
