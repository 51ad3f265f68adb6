"""The synthetic generator: deterministic, valid, and with the public proportions it claims."""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest

from devtools import synthetic
from devtools.synthetic import Population, generate
from shared.events.catalogue import decode_inbound
from shared.identifiers import LA_CODES, validate_upn, validate_urn


@cache
def sample() -> Population:
    return generate(las=4, pupils_per_la=25_000, seed=11)


def test_same_seed_same_output_and_another_seed_differs() -> None:
    a, b = generate(las=2, pupils_per_la=2_000, seed=3), generate(las=2, pupils_per_la=2_000, seed=3)
    assert a.events == b.events and a.pupils == b.pupils and a.la_codes == b.la_codes
    c = generate(las=2, pupils_per_la=2_000, seed=4)
    assert c.events != a.events


def test_every_event_validates_and_identifiers_are_real() -> None:
    pop = generate(las=3, pupils_per_la=3_000, seed=5)
    assert set(pop.la_codes) <= LA_CODES and len(set(pop.la_codes)) == 3
    for event in pop.events:
        decode_inbound(event)  # raises on any invalid field (UPN check letter, URN, LA number)
    assert len({p.upn for p in pop.pupils}) == len(pop.pupils)
    assert len({s.urn for s in pop.schools}) == len(pop.schools)
    for pupil in pop.pupils[:500]:
        validate_upn(pupil.upn)
        validate_urn(pupil.school_urn)
        age = (synthetic.SCHOOL_YEAR_START - pupil.date_of_birth).days / 365.25
        assert 5 <= age < 17  # compulsory school age (Years 1-11)


def test_events_are_in_event_time_order_overall_and_per_child() -> None:
    pop = generate(las=2, pupils_per_la=3_000, seed=6)
    times = [e["occurred_at"] for e in pop.events]
    assert times == sorted(times)
    for events in pop.by_child().values():
        stamps = [e["occurred_at"] for e in events]
        assert stamps == sorted(stamps)


def test_cme_rate_and_reasons_follow_the_public_figures() -> None:
    pop = sample()
    n = len(pop.pupils)
    cme = [p for p in pop.pupils if p.cme_reason]
    assert abs(len(cme) / n - synthetic.CME_RATE) < 0.0015  # 0.5% of 100,000: ~500 +- 70 at 3 sigma
    reasons = Counter(p.cme_reason for p in cme)
    for reason in ("awaiting_place", "whereabouts_unknown"):  # the two categories big enough to check
        assert reasons[reason] / len(cme) == pytest.approx(synthetic.CME_REASONS[reason], abs=0.07)


@pytest.mark.parametrize(
    ("flag", "rate", "ratio"),
    [
        ("sen", synthetic.SEN_RATE, synthetic.SEN_RATIO_CME),
        ("deprived", synthetic.DEPRIVED_RATE, synthetic.DEPRIVED_RATIO_CME),
        ("child_in_need", synthetic.CHILD_IN_NEED_RATE, synthetic.CHILD_IN_NEED_RATIO_CME),
    ],
)
def test_over_representation_among_cme(flag: str, rate: float, ratio: float) -> None:
    pop = sample()
    cme = [p for p in pop.pupils if p.cme_reason]
    share_all = sum(bool(getattr(p, flag)) for p in pop.pupils) / len(pop.pupils)
    share_cme = sum(bool(getattr(p, flag)) for p in cme) / len(cme)
    assert share_all == pytest.approx(rate, abs=0.01)
    # ~500 CME children: the ratio is noisy, so the tolerance is wide but still tells 1x from the claim.
    assert share_cme / share_all == pytest.approx(ratio, rel=0.3)


def test_absence_exclusion_and_move_rates() -> None:
    pop = sample()
    n = len(pop.pupils)
    kinds = Counter(
        (e["event_type"], e["payload"].get("exclusion_type") or e["payload"].get("rule")) for e in pop.events
    )
    crossings = (
        kinds[("absence-threshold-crossed", "persistent_10_percent")]
        + kinds[("absence-threshold-crossed", "severe_50_percent")]
    )
    # Pupils who leave early in the year have no time to cross a threshold: a little under the rate.
    assert 0.85 * synthetic.PERSISTENT_ABSENCE_RATE < crossings / n < 1.01 * synthetic.PERSISTENT_ABSENCE_RATE
    assert kinds[("exclusion-issued", "suspension")] / n == pytest.approx(
        synthetic.SUSPENSIONS_PER_PUPIL, rel=0.1
    )
    moves = Counter(e["event_type"] for e in pop.events)["moved-out-of-area"]
    assert moves / n == pytest.approx(synthetic.MOVE_BETWEEN_LAS_RATE, rel=0.1)
    ehe = Counter(e["event_type"] for e in pop.events)["home-education-notified"]
    assert ehe / n == pytest.approx(synthetic.EHE_RATE, rel=0.15)


def test_moves_between_generated_las_arrive_in_the_destination() -> None:
    pop = generate(las=2, pupils_per_la=5_000, seed=8)
    arrivals = {
        e["payload"]["child"]["upn"]: e["source"]["la_code"]
        for e in pop.events
        if e["event_type"] == "pupil-registered"
        and e["source"]["la_code"] != e["payload"]["child"]["upn"][1:4]
    }
    moves = [e for e in pop.events if e["event_type"] == "moved-out-of-area"]
    assert moves
    for move in moves:
        assert arrivals.get(move["payload"]["child"]["upn"]) == move["payload"]["new_la_code"]


def test_every_synthetic_event_passes_the_referral_services_rules() -> None:
    """The load and scale tests feed the year through the API: an event it refuses would be lost from them
    (a move to "another" school that was the pupil's own was refused once intake learned to check)."""
    from datetime import UTC, datetime

    from services.referral.validation import service_rule_problems

    pop = generate(las=2, pupils_per_la=3_000, seed=11)
    after_the_year = datetime(2025, 8, 1, tzinfo=UTC)
    refused = [
        (envelope.event_type, problems)
        for envelope in pop.envelopes()
        if (problems := service_rule_problems(envelope, after_the_year))
    ]
    assert not refused, refused[:3]
