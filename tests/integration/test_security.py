"""Login throttling, cookie and header settings, and the deploy checks."""
import os
import subprocess
import sys

import pytest
from django.core.cache import cache

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def test_token_login_works_and_pauses_after_repeated_failures(client, user, settings):
    good = client.post("/api/auth/token/", {"username": "alice", "password": "alice-password-1"})
    assert good.status_code == 200 and good.json()["token"]
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        bad = client.post("/api/auth/token/", {"username": "alice", "password": "wrong"})
        assert bad.status_code == 400 and bad.json()["message"]
    locked = client.post("/api/auth/token/", {"username": "alice", "password": "alice-password-1"})
    assert locked.status_code == 429 and "Too many failed logins" in locked.json()["message"]


def test_login_page_pauses_after_repeated_failures(client, user, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        page = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert b"did not match" in page.content
    page = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    assert page.status_code == 200 and b"Too many failed logins" in page.content
    assert "_auth_user_id" not in client.session


def test_forms_need_a_csrf_token(user):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"}).status_code == 403
    strict.force_login(user)
    assert strict.post("/api/projects/", {"name": "x"}).status_code == 403


def test_responses_forbid_sniffing_and_framing(api, project):
    response = api.get("/api/projects/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_production_settings_pass_the_deploy_check():
    env = {**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 60 + "-deploy-check-key-with-enough-variety-0123456789",
           "DJANGO_SETTINGS_MODULE": "webapp.settings", "DJANGO_ALLOWED_HOSTS": "toolkit.example.org"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests' process only
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
