"""``tests/unit/test_escalation_quiet_facts.py`` on PostgreSQL: the batch reads its children with ``= ANY``
and writes new ones in one INSERT there, and a fact's row lock and statements are PostgreSQL's. Also a short
run of ``bench/profile_escalation.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from shared.localstack.postgres import PostgresCluster
from shared.settings import PROJECT_ROOT
from tests.integration.test_escalation_replay import _fresh_database
from tests.unit.test_escalation_quiet_facts import (  # noqa: F401 (the fixtures and tests run here too)
    engine,
    settings,
    test_a_fact_a_rule_ends_on_still_ends_its_clock_among_quiet_facts,
    test_a_notice_after_a_new_childs_transition_in_the_batch_reads_what_the_transition_said,
    test_a_roll_fact_carrying_a_flag_is_remembered_for_a_later_notice,
    test_a_year_in_batches_decides_what_each_record_alone_decides,
    test_new_childrens_first_transitions_cost_no_statement_each,
    test_quiet_facts_cost_no_statement_each,
    worker,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def new_database(postgres_server: tuple[str, PostgresCluster | None]) -> Callable[[], str]:
    return lambda: _fresh_database(postgres_server)


def test_the_profile_bench_runs(postgres_server: tuple[str, PostgresCluster | None]) -> None:
    """``bench/profile_escalation.py`` on a few records, so it cannot rot unnoticed; its two passes over the
    same records leave the same state (each prints a digest of it)."""
    admin_url, _ = postgres_server
    done = subprocess.run(
        [sys.executable, "-m", "bench.profile_escalation", "--bulk", "60", "--pupils", "60", "--runs", "2"],
        cwd=PROJECT_ROOT, env={**os.environ, "CME_BENCH_DATABASE_URL": admin_url},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for load in ("bulk", "year"):
        block = done.stdout.split(f"\n{load}: ")[1].split("\n\n")[0]
        states = {line.split("state ")[1] for line in block.splitlines() if "state " in line}
        assert len(states) == 1, block  # two passes, one outcome
        assert "child facts: " in block and "statements each" in block
