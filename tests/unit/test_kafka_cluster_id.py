"""The local stack's KRaft cluster ids are ones StorageTool accepts on its command line."""

from __future__ import annotations

import re

from shared.localstack.kafka import _kafka_cluster_id


def test_cluster_ids_are_22_base64url_characters_and_never_start_with_a_dash() -> None:
    # An id starting with "-" made `kafka-storage format -t -3Vm...` fail as a missing argument: one broker
    # start in 64 (seen in a clean-clone CI run). 10,000 draws meet a leading "-" ~156 times on the old code.
    ids = [_kafka_cluster_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
