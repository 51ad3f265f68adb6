"""A synthetic school year replayed through tracking's case logic: no case closes without an outcome naming
the child's education, handovers between the LAs are confirmed back, and an LA outside the deployment leaves
its children's cases open for a person."""

from __future__ import annotations

from functools import cache

from devtools.synthetic import Population, generate
from services.tracking.replay import Ending, replay, report


@cache
def population() -> Population:
    return generate(las=3, pupils_per_la=4_000, seed=5)


def test_no_case_closes_without_an_outcome_and_handovers_come_back() -> None:
    ending = replay(population())
    print("\n" + report(ending))  # the counts by outcome, with -s
    assert ending.unnamed == []
    assert sum(ending.by_outcome.values()) == sum(
        n for state, n in ending.by_state.items()
        if state in ("in_education", "electively_home_educated", "left_area", "moved_abroad", "out_of_scope")
    )  # fmt: skip
    assert ending.by_outcome["school"] > 0 and ending.by_outcome["registered_home_education"] > 0
    # Every move between the population's LAs is handed over, and the destinations confirm most of them
    # back within the year (the rest are still open at the origin, handed over: in sight).
    assert ending.handovers > 0 and 0 < ending.confirmations <= ending.handovers


def test_the_register_follows_the_cases_and_no_entry_is_handed_to_nobody() -> None:
    ending = replay(population())
    # Every home-educated child is on the register; every child handed over is on it (in the origin) and the
    # LA it was handed to has the child.
    assert ending.on_register["elective_home_education"] == ending.by_state["electively_home_educated"] > 0
    assert ending.on_register["handed_over"] == ending.by_state["handed_over"]
    assert ending.handed_to_nobody == 0
    cme = ("missing_education", "whereabouts_unknown", "awaiting_provision", "place_offered")
    missing = sum(ending.by_state[s] for s in cme)
    assert ending.on_register["missing_education"] == missing
    assert ending.left_register["registered_at_school"] > 0


def test_moves_to_an_la_outside_the_deployment_stay_open() -> None:
    pop = population()
    served = frozenset(pop.la_codes[:1])
    ending: Ending = replay(pop, deployment=served)
    assert ending.unnamed == []
    assert ending.by_state["awaiting_la_confirmation"] > 0  # waiting for a person, never closed
    assert ending.confirmations == 0  # nobody on the deployment to confirm them
