"""Replay a synthetic school year (devtools.synthetic) through tracking's case logic, in process, and count
how the cases end: no Kafka, no database, no identity matching (a child is its UPN within an LA).

What the services do between LAs is done here too: a handover (a move, a leaver to another LA or to a school
there) is applied in the destination LA as the intake topic would deliver it, and the destination's
confirmation (handover-confirmed) goes back to the origin. LAs outside the population are outside the
deployment: those cases wait for a person (awaiting_la_confirmation).

    .venv/bin/python -m services.tracking.replay --las 4 --pupils 25000 --seed 11

The invariant it checks: no case ends in a resolved state without an outcome naming the child's education.
"""

from __future__ import annotations

import argparse
import heapq
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from devtools.synthetic import Population, generate
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope, Source
from shared.events.internal import RESOLVED_STATES, ChildFact, ChildFactPayload, MatchKind

REPLAY_NAMESPACE = uuid.UUID("7c1e4f0a-9b52-4d3e-8f61-2a5b9c0d7e13")


@dataclass
class Ending:
    """How the replayed cases ended."""

    events: int = 0  # inbound facts applied, handovers and confirmations included
    handovers: int = 0
    confirmations: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)  # resolved cases, by outcome
    unnamed: list[tuple[str, str]] = field(default_factory=list)  # (LA, state) resolved with no outcome
    # The register of children not in school at the end: on it by category, left it by reason.
    on_register: Counter[str] = field(default_factory=Counter)
    left_register: Counter[str] = field(default_factory=Counter)
    # Entries handed to an LA of the deployment that does not have the child: in no LA's hands (must be 0).
    handed_to_nobody: int = 0


def _child_id(la: str, upn: str) -> uuid.UUID:
    return uuid.uuid5(REPLAY_NAMESPACE, f"{la}:{upn}")


def replay(population: Population, deployment: frozenset[str] | None = None) -> Ending:
    """``deployment``: the LAs served (default: the population's); the others get no handovers."""
    deployment = frozenset(population.la_codes) if deployment is None else deployment
    records: dict[tuple[str, str], ChildRecord] = {}
    ending = Ending()
    queue: list[tuple[str, int, Envelope]] = []  # (event time, order, event): handovers join in time order
    for order, data in enumerate(population.events):
        event = decode_inbound(data)
        heapq.heappush(queue, (event.occurred_at.isoformat(), order, event))
    order = len(queue)
    while queue:
        _, _, event = heapq.heappop(queue)
        la, upn = str(event.source.la_code), event.payload.child.upn  # type: ignore[attr-defined]
        if la not in deployment:
            continue  # an LA outside the deployment: nobody here sees its facts
        key = (la, upn)
        child_id = _child_id(la, upn)
        record = records.get(key) or new_record(str(child_id), la)
        fact = ChildFact(
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            source=Source(system="replay", la_code=la),
            payload=ChildFactPayload(
                child_id=child_id, la_code=la, match=MatchKind.EXACT, fact=event.model_dump(mode="json")
            ),
        )
        out = apply_child_fact(record, fact, deployment, inbound=event)  # decoded above: not again
        records[key] = out.record
        ending.events += 1
        for sent in out.handovers:
            ending.confirmations += sent.event_type == "handover-confirmed"
            ending.handovers += sent.event_type != "handover-confirmed"
            order += 1
            heapq.heappush(queue, (sent.occurred_at.isoformat(), order, sent))
    for (la, upn), record in records.items():
        entry = record.case.register_status
        if entry.on:
            ending.on_register[str(entry.category)] += 1
            if entry.handed_to and entry.handed_to in deployment and (entry.handed_to, upn) not in records:
                ending.handed_to_nobody += 1
        elif entry.left_reason:
            ending.left_register[entry.left_reason] += 1
        case = record.case
        if case.state is None:
            continue
        ending.by_state[str(case.state)] += 1
        if case.state in RESOLVED_STATES:
            if case.outcome is None:
                ending.unnamed.append((la, str(case.state)))
            else:
                ending.by_outcome[str(case.outcome)] += 1
    return ending


def report(ending: Ending) -> str:
    lines = [
        f"facts applied {ending.events} (handovers {ending.handovers}, confirmations {ending.confirmations})",
        "cases by state: " + ", ".join(f"{s} {n}" for s, n in ending.by_state.most_common()),
        "closed cases by outcome: " + ", ".join(f"{o} {n}" for o, n in ending.by_outcome.most_common()),
        f"closed without an outcome: {len(ending.unnamed)}",
        "on the register of children not in school: "
        + ", ".join(f"{c} {n}" for c, n in ending.on_register.most_common()),
        "left the register: " + ", ".join(f"{r} {n}" for r, n in ending.left_register.most_common()),
        f"handed over to an LA that does not have the child: {ending.handed_to_nobody}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--las", type=int, default=4)
    parser.add_argument("--pupils", type=int, default=25_000, help="pupils per LA")
    parser.add_argument("--seed", type=int, default=11)
    args: Any = parser.parse_args(argv)
    ending = replay(generate(las=args.las, pupils_per_la=args.pupils, seed=args.seed))
    print(report(ending))
    return 1 if ending.unnamed or ending.handed_to_nobody else 0


if __name__ == "__main__":
    raise SystemExit(main())
