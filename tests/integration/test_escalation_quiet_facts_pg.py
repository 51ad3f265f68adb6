"""``tests/unit/test_escalation_quiet_facts.py`` on PostgreSQL: the batch reads its children with ``= ANY``
and writes new ones in one INSERT there, and a fact's row lock and statements are PostgreSQL's."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.localstack.postgres import PostgresCluster
from tests.integration.test_escalation_replay import _fresh_database
from tests.unit.test_escalation_quiet_facts import (  # noqa: F401 (the fixtures and tests run here too)
    engine,
    settings,
    test_a_fact_a_rule_ends_on_still_ends_its_clock_among_quiet_facts,
    test_a_roll_fact_carrying_a_flag_is_remembered_for_a_later_notice,
    test_a_transition_after_a_new_childs_first_fact_in_the_batch_is_what_later_facts_read,
    test_a_year_in_batches_decides_what_it_decides_one_record_at_a_time,
    test_quiet_facts_cost_no_statement_each,
    worker,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def new_database(postgres_server: tuple[str, PostgresCluster | None]) -> Callable[[], str]:
    return lambda: _fresh_database(postgres_server)
