"""Group commit and the API key cache of the referral service: answers only after the commit, one request's
failure never another's; a cached key is re-read after its lifetime (revocation takes effect), bounded."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, func, select

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.app import MIGRATIONS
from services.referral.clients import create_client, revoke_client
from services.referral.groupcommit import GroupCommit
from services.referral.keycache import ClientCache
from services.referral.models import ApiClient, ClientKind, Submission
from services.referral.service import Intake, Item, Outcome, check
from shared.db import make_engine, migrate
from shared.events.envelope import Envelope


@pytest.fixture
def intake(tmp_path: Path) -> Intake:
    url = f"sqlite:///{tmp_path / 'referral.db'}"
    migrate(url, MIGRATIONS, "referral")
    return Intake(make_engine(url), "intake")


@pytest.fixture
def school(intake: Intake) -> ApiClient:
    client, _ = create_client(
        intake.engine, kind=ClientKind.SCHOOL, name="s", la_code=DEMO_LA, school_urn=DEMO_SCHOOL_URN
    )
    return client


def item(client: ApiClient, serial: int) -> Item:
    event = check(client, sample_event_dict("pupil-registered", child_serial=serial))
    assert isinstance(event, Envelope)
    return Item.of(client, event)


def stored(intake: Intake, event_id: Any) -> bool:
    with Session(intake.engine) as session:
        stmt = select(func.count()).select_from(Submission).where(col(Submission.event_id) == str(event_id))
        return int(session.exec(stmt).one()) == 1


class GatedIntake(Intake):
    """The real store, held at the door of each transaction until the test opens it."""

    def __init__(self, inner: Intake) -> None:
        super().__init__(inner.engine, inner.intake_topic)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.groups: list[int] = []
        self.poison: set[str] = set()

    def store_items(self, items: list[Item]) -> list[Outcome]:
        self.entered.set()
        assert self.gate.wait(10)
        self.groups.append(len(items))
        if any(str(i.event.event_id) in self.poison for i in items):
            raise RuntimeError("this request's store fails")
        return super().store_items(items)


async def test_requests_arriving_during_a_commit_share_the_next_transaction(
    intake: Intake, school: ApiClient
) -> None:
    gated = GatedIntake(intake)
    writer = GroupCommit(gated)
    first = asyncio.create_task(writer.store([item(school, 1)]))
    await asyncio.to_thread(gated.entered.wait, 10)  # the first group's transaction has begun
    others = [asyncio.create_task(writer.store([item(school, n)])) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert not first.done() and not any(t.done() for t in others)  # nothing answered before its commit
    gated.gate.set()
    outcomes = [await first] + [await t for t in others]
    assert gated.groups == [1, 3]  # the three that queued meanwhile went in one transaction
    assert [o[0].status_code for o in outcomes] == [202, 202, 202, 202]


async def test_an_answer_means_the_event_is_committed(intake: Intake, school: ApiClient) -> None:
    writer = GroupCommit(intake)
    items = [item(school, n) for n in range(1, 9)]
    seen_committed: list[bool] = []

    async def submit(i: Item) -> None:
        (outcome,) = await writer.store([i])
        # read through a new connection the moment the answer arrives: the row is already there
        seen_committed.append(outcome.status_code == 202 and stored(intake, i.event.event_id))

    await asyncio.gather(*(submit(i) for i in items))
    assert seen_committed == [True] * 8
    assert writer.groups < 8  # concurrent requests shared transactions


async def test_a_failing_request_fails_alone(intake: Intake, school: ApiClient) -> None:
    gated = GatedIntake(intake)
    writer = GroupCommit(gated)
    blocker = asyncio.create_task(writer.store([item(school, 1)]))
    await asyncio.to_thread(gated.entered.wait, 10)
    bad, good = item(school, 2), item(school, 3)
    gated.poison.add(str(bad.event.event_id))
    bad_task = asyncio.create_task(writer.store([bad]))
    good_task = asyncio.create_task(writer.store([good]))
    await asyncio.sleep(0)
    gated.gate.set()
    await blocker
    with pytest.raises(RuntimeError):
        await bad_task
    assert (await good_task)[0].status_code == 202
    assert stored(intake, good.event.event_id) and not stored(intake, bad.event.event_id)
    assert gated.groups == [1, 2, 1, 1]  # the failed group, then each of its requests on its own


def test_a_cached_key_is_read_again_after_its_lifetime(intake: Intake, school: ApiClient) -> None:
    now = [100.0]
    cache = ClientCache(intake.engine, ttl_s=2.0, clock=lambda: now[0])
    assert cache.cached(school.key_id) is None
    assert cache.load(school.key_id) is not None
    assert revoke_client(intake.engine, school.id)
    now[0] += 1.9
    cached = cache.cached(school.key_id)
    assert cached is not None and cached.revoked_at is None  # within the lifetime: the old read
    now[0] += 0.1
    assert cache.cached(school.key_id) is None  # expired: the next request reads the revocation
    reread = cache.load(school.key_id)
    assert reread is not None and reread.revoked_at is not None


def test_the_key_cache_is_bounded_and_never_holds_unknown_keys(intake: Intake) -> None:
    cache = ClientCache(intake.engine, max_entries=3)
    clients = [
        create_client(intake.engine, kind=ClientKind.AGENCY, name=f"a{n}", la_code=DEMO_LA)[0]
        for n in range(5)
    ]
    for c in clients:
        cache.load(c.key_id)
    assert [cache.cached(c.key_id) is not None for c in clients] == [False, False, True, True, True]
    assert cache.load("no-such-key") is None and cache.cached("no-such-key") is None
