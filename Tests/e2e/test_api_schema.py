"""The API against its own OpenAPI document: schemathesis generates requests from
docs/api/openapi.yaml (valid and invalid) and checks every answer against it: status codes,
content types, response schemas, 405 with Allow for undeclared methods, no 5xx."""
from __future__ import annotations

import shutil

import pytest

from conftest import REPO_ROOT, run


def test_api_conforms_to_its_openapi_document(gateway):
    if not shutil.which("schemathesis") and not shutil.which("st"):
        pytest.fail("schemathesis is required (scripts/test installs it)", pytrace=False)
    r = run([str(gateway.binary), "token", "create", "--user", "adam", "--config", str(gateway.config_path)])
    assert r.rc == 0, str(r)
    token = r.out.strip().splitlines()[-1]
    # Actions that end sessions or logins are left out: they would end the other tests' state.
    r = run([shutil.which("schemathesis") or shutil.which("st"), "run", str(REPO_ROOT / "docs/api/openapi.yaml"),
             "--url", gateway.web_url, "-H", f"Authorization: Bearer {token}", "--checks", "all",
             "--max-examples", "25", "--exclude-path-regex", "live|terminate|logout", "--seed", "20261125"], timeout=60)
    assert r.rc == 0, f"schemathesis found the API and its document disagree:\n{r.out[-6000:]}\n{r.err[-2000:]}"
