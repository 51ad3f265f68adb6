"""What tracking's HTTP handlers are given (FastAPI dependencies): the case store's engine, the cross-LA
matcher and the publisher of review decisions, all set on ``app.state`` by ``app.create_app``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.engine import Engine

from services.tracking.crossla import CrossLAMatcher
from services.tracking.review import Publish


def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def get_matcher(request: Request) -> CrossLAMatcher:
    return request.app.state.matcher  # type: ignore[no-any-return]


def get_publish(request: Request) -> Publish:
    return request.app.state.publish  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(get_engine)]
MatcherDep = Annotated[CrossLAMatcher, Depends(get_matcher)]
PublishDep = Annotated[Publish, Depends(get_publish)]
# Why a person reads a record, in the query string of an audited GET (bodies use ``schemas.Reason``).
ReasonQuery = Annotated[str, Query(min_length=3, max_length=500)]
