"""The dashboard's files through the real app (aiohttp's test server on 127.0.0.1): served without
credentials with the Content-Security-Policy, nothing else under / leaks, the API stays behind Basic auth
and answers no CORS preflight, and every file the page loads exists and is shipped as package data."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.http import app as http_app
from amqp_server.http.context import Context
from amqp_server.http.dashboard import STATIC_DIR

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    app = http_app.create_app(Context(BrokerOperations(Broker()), tmp_path))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def test_the_page_and_its_files_need_no_credentials_and_carry_the_csp(client: TestClient) -> None:
    for url, content_type in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
    ]:
        response = await client.get(url)
        assert response.status == 200, url
        assert response.content_type == content_type
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    api = await client.get("/api/whoami")
    assert api.status == 401 and "Content-Security-Policy" not in api.headers  # the API keeps its own headers


async def test_nothing_but_the_static_files_is_served(client: TestClient) -> None:
    for url in ["/static/missing.js", "/static/..%2Fapp.py", "/static/.hidden", "/static/%2E%2E%2Fdashboard.py"]:
        response = await client.get(url)
        assert response.status == 404, url
        assert await response.json() == {"error": "Object Not Found", "reason": "Not Found"}
    assert (await client.post("/")).status == 401  # only GET/HEAD go without credentials


async def test_a_cors_preflight_is_not_answered_permissively(client: TestClient) -> None:
    """No Access-Control-Allow-* header anywhere: another site's script can neither read the API nor send it
    a request with credentials or a JSON body (those need a preflight that succeeds)."""
    headers = {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for url in ["/api/queues/%2F/q", "/api/connections/x", "/"]:
        response = await client.options(url, headers=headers)
        assert response.status >= 400, url
        assert not [name for name in response.headers if name.lower().startswith("access-control-")], url
    response = await client.get("/api/overview", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_every_file_the_page_loads_exists() -> None:
    """index.html's scripts and styles and every ES module import resolve to files in static/."""
    referenced = set(re.findall(r'(?:src|href)="static/([^"]+)"', (STATIC_DIR / "index.html").read_text()))
    for script in STATIC_DIR.glob("*.js"):
        referenced |= set(re.findall(r"from '\./([^']+)'", script.read_text()))
    assert {"app.js", "app.css"} <= referenced
    assert not [name for name in referenced if not (STATIC_DIR / name).is_file()]


def test_the_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-data"]["amqp_server.http"] == ["static/*"]


def test_no_script_writes_markup() -> None:
    """Broker-echoed text reaches the page only as text nodes: no innerHTML/outerHTML/insertAdjacentHTML,
    document.write or eval in the dashboard's scripts."""
    banned = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function")
    offenders = [path.name for path in STATIC_DIR.glob("*.js") if banned.search(path.read_text())]
    assert not offenders


async def test_a_state_changing_request_from_another_site_is_refused(client: TestClient) -> None:
    """Even with valid credentials (a browser attaches Basic credentials it cached to a cross-site form's
    POST): a request a browser marks as from another site changes nothing. Same-site and non-browser
    requests are unaffected."""
    guest = {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}
    host = f"127.0.0.1:{client.port}"
    refused = await client.put("/api/vhosts/evil", headers={**guest, "Origin": "http://evil.example"})
    assert (refused.status, await refused.json()) == (
        403,
        {"error": "forbidden", "reason": "cross-site request refused"},
    )
    sandboxed = {**guest, "Origin": "null", "Sec-Fetch-Site": "cross-site"}  # a sandboxed frame, a file: page
    assert (await client.delete("/api/vhosts/%2F", headers=sandboxed)).status == 403
    assert "evil" not in [vhost["name"] for vhost in await (await client.get("/api/vhosts", headers=guest)).json()]
    for allowed in (
        {**guest},  # curl, rabbitmqadmin: no Origin
        {**guest, "Origin": f"http://{host}"},  # the dashboard, from an older browser
        {**guest, "Origin": "https://dashboard.example", "Sec-Fetch-Site": "same-origin"},  # behind a proxy
    ):
        assert (await client.put("/api/vhosts/fine", headers=allowed)).status in (201, 204)
    assert (await client.get("/api/overview", headers={**guest, "Origin": "http://evil.example"})).status == 200
