"""Tokens have an audience: a web session cookie is not an API bearer token, and the APIs take no cookies."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.auth import Audience, CaseReader, InvalidToken, Role, issue_token, verify_token
from shared.settings import Settings, get_settings

SETTINGS = Settings(signing_key="audience-tests-signing-key-0123456789")  # type: ignore[arg-type]


def _api() -> TestClient:
    app = FastAPI()
    app.dependency_overrides[get_settings] = lambda: SETTINGS

    @app.get("/who")
    def who(principal: CaseReader) -> dict[str, str]:
        return {"sub": principal.sub}

    return TestClient(app)


def test_a_web_session_token_is_refused_by_the_apis() -> None:
    session = issue_token(SETTINGS, "cw1", Role.CASEWORKER, "801", audience=Audience.WEB_SESSION)
    api = issue_token(SETTINGS, "cw1", Role.CASEWORKER, "801")
    with _api() as client:
        assert client.get("/who", headers={"Authorization": f"Bearer {api}"}).status_code == 200
        refused = client.get("/who", headers={"Authorization": f"Bearer {session}"})
        assert refused.status_code == 401 and "not meant for this service" in refused.text
        # A browser's cookie is not a credential for an API (no CSRF defence there).
        client.cookies.set("cme_session", api)
        assert client.get("/who").status_code == 401


def test_an_api_token_is_not_a_web_session() -> None:
    api = issue_token(SETTINGS, "cw1", Role.CASEWORKER, "801")
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, api, Audience.WEB_SESSION)
    session = issue_token(SETTINGS, "cw1", Role.CASEWORKER, "801", audience=Audience.WEB_SESSION)
    assert verify_token(SETTINGS, session, Audience.WEB_SESSION).sub == "cw1"
