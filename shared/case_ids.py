"""The id of a child's case: a function of the child and the LA, so every service derives the same one.

Tracking owns cases, but escalation may start a clock from a child-fact before tracking's case transition
for that child has reached it (the two topics are read independently); it must still name the same case.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

CASE_NAMESPACE = uuid.UUID("4c1f7d3e-8a2b-4e6f-9d0c-2b7a5e3f1a90")


@lru_cache(maxsize=16_384)  # a batch's children: tracking names each case several times (SHA-1 each time)
def case_uuid_for(child_id: str, la_code: str) -> uuid.UUID:
    """One case per child per LA (a child who moves LA has a case in each)."""
    return uuid.uuid5(CASE_NAMESPACE, f"case:{child_id}:{la_code}")


def case_id_for(child_id: str, la_code: str) -> str:
    return str(case_uuid_for(child_id, la_code))
