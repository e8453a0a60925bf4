"""The audit of admin changes: its hash chain verifies in SQLite and PostgreSQL, and an edited
change, an edited column, a deleted change or a moved head is found; the CLI's changes are
recorded and `tollway audit verify` checks the chain."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import msgspec
import pytest

from gateway.admin import changes as admin_changes
from gateway.admin.identity import MASTER, AdminIdentity
from gateway.policy.keyadmin import TeamView, now_utc
from gateway.store import Store
from gateway.store.sqlite import SQLiteStore
from tests.integration.test_cli import run_tollway
from tests.support.stores import execute_sql, opened_store

pytestmark = pytest.mark.integration


async def _five_changes(store: Store) -> None:
    lead = AdminIdentity("adm_1", "team_admin", "admin_key", ("team_a",))
    moment = now_utc()
    for n in range(5):
        before = TeamView(f"team_{n}", "old", "active", moment, moment) if n else None
        after = TeamView(f"team_{n}", "new", "active", moment, moment)
        actor = lead if n % 2 else MASTER
        await admin_changes.record_change(
            store, actor, "team.update", f"team_{n}", before=before, after=after, team_id=f"team_{n}"
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        ("update tollway_admin_changes set data = replace(data, 'new', 'NEW') where seq = 3", 3, "altered"),
        ("update tollway_admin_changes set who = 'someone else' where seq = 2", 2, "column who"),
        ("delete from tollway_admin_changes where seq = 4", 4, "missing"),
        ("delete from tollway_admin_changes where seq = 5", 5, "missing"),
        ("update tollway_admin_changes_head set head_hash = 'f' where id = 1", 5, "head"),
    ],
)
def test_the_change_chain_verifies_and_tampering_is_found(
    kind: str, tamper: str, seq: int, reason: str, tmp_path: Path
) -> None:
    async def run() -> None:
        async with opened_store(kind, tmp_path) as store:
            await _five_changes(store)
            ok = await admin_changes.verify(store)
            assert ok.ok and ok.checked == 5 and ok.head_seq == 5 and (ok.first_seq, ok.last_seq) == (1, 5)
            links = await store.list_changes(limit=10)
            assert ok.head_hash == links[-1].hash and [link.seq for link in links] == [1, 2, 3, 4, 5]
            change = msgspec.json.decode(links[1].data)
            assert (
                change["who"] == "adm_1"
                and change["role"] == "team_admin"
                and change["before"]["name"] == "old"
            )
            await execute_sql(store, tamper)
            broken = await admin_changes.verify(store)
            assert broken.broken is not None and broken.broken.seq == seq, broken
            assert reason in broken.broken.reason, broken.broken.reason

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_changes_are_filtered_by_subject_and_team(kind: str, tmp_path: Path) -> None:
    async def run() -> None:
        async with opened_store(kind, tmp_path) as store:
            await _five_changes(store)
            moved = AdminIdentity("master", "admin", "master_key")
            await admin_changes.record_change(
                store,
                moved,
                "key.update",
                "key_x",
                before=None,
                after=None,
                team_id="team_9",
                other_team_id="team_1",
            )
            lead = AdminIdentity("adm_1", "team_admin", "admin_key", ("team_1",))
            seen = await admin_changes.changes_page(store, lead, {})
            assert [msgspec.json.decode(e.change)["subject_id"] for e in seen.data] == ["team_1", "key_x"], (
                "a team admin sees changes whose team before or after is one of its own"
            )
            one = await admin_changes.changes_page(store, MASTER, {"subject_id": "team_3"})
            assert [e.seq for e in one.data] == [4]
            paged = await admin_changes.changes_page(store, MASTER, {"limit": "4"})
            assert len(paged.data) == 4 and paged.has_more and paged.next_after == "4"
            rest = await admin_changes.changes_page(store, MASTER, {"after": "4"})
            assert [e.seq for e in rest.data] == [5, 6] and not rest.has_more

    asyncio.run(run())


def test_the_cli_records_its_changes_and_verifies_both_chains(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(f'storage: {{database_url: "sqlite:///{tmp_path}/store.sqlite"}}\n')

    def tollway(*args: str) -> subprocess.CompletedProcess[bytes]:
        return run_tollway(config, *args)

    team = tollway("teams", "create", "--name", "t")
    assert team.returncode == 0, team.stderr
    team_id = msgspec.json.decode(team.stdout)["id"]
    key = msgspec.json.decode(tollway("keys", "create", "--name", "k", "--team", team_id).stdout)
    rotated = tollway("keys", "rotate", key["id"], "--grace", "90m")
    assert rotated.returncode == 0, rotated.stderr
    fresh = msgspec.json.decode(rotated.stdout)
    assert fresh["key"] != key["key"] and b"the old one works until" in rotated.stderr
    assert tollway("keys", "rotate", key["id"], "--grace", "soon").returncode == 1
    lead = tollway("admin-keys", "create", "--name", "lead", "--role", "team_admin", "--teams", team_id)
    assert lead.returncode == 0, lead.stderr
    issued = msgspec.json.decode(lead.stdout)
    assert issued["key"].startswith("sk-tw-admin-") and issued["teams"] == [team_id]
    listed = tollway("admin-keys", "list")
    assert msgspec.json.decode(listed.stdout)["id"] == issued["id"] and b"sk-tw-admin-" not in listed.stdout
    assert msgspec.json.decode(tollway("admin-keys", "revoke", issued["id"]).stdout)["status"] == "revoked"
    assert tollway("admin-keys", "create", "--name", "x", "--role", "team_admin").returncode == 1

    verified = tollway("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    changes = msgspec.json.decode(verified.stdout)["admin_changes"]
    assert changes["checked"] == 5 and b"ok: 5 admin changes checked" in verified.stderr

    async def read_and_tamper() -> list[dict[str, object]]:
        store = SQLiteStore(str(tmp_path / "store.sqlite"))
        try:
            links = await store.list_changes(limit=10)
            await execute_sql(
                store, "update tollway_admin_changes set data = replace(data, 'k', 'K') where seq = 2"
            )
        finally:
            await store.close()
        return [msgspec.json.decode(link.data) for link in links]

    made = asyncio.run(read_and_tamper())
    assert [c["action"] for c in made] == [
        "team.create",
        "key.create",
        "key.rotate",
        "admin_key.create",
        "admin_key.revoke",
    ]
    assert all(str(c["who"]).startswith("cli:") and c["via"] == "cli" for c in made)
    broken = tollway("audit", "verify")
    assert broken.returncode == 1 and b"chain of admin changes is broken at seq 2" in broken.stderr
