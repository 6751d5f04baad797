"""The web dashboard in a real headless browser: Debian's chromium, driven through chromium-driver by Selenium.

Against a broker process of this module's own (a free management port on 127.0.0.1): log in, the plots
fill, list and open queues, get/publish/purge, close a connection (the client sees 320), and names and
bodies full of markup stay text. Every test ends with an empty browser console (no errors, no CSP
violations). Screenshots of each page go to ``$DASHBOARD_SCREENSHOTS`` (or a tmp dir), printed at the
start. Where chromium or its driver is missing, the tests fail under CI (``CI=true``) and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .broker_process import BrokerProcess
from .conftest import TIMEOUT

WAIT = 20.0  # seconds any wait for the page gives up after (a refresh is 1 s; the slowest step is startup)
# markup that would set window.__pwned if the page ever parsed broker-echoed text as HTML
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def missing(what: str, install: str) -> None:
    message = f"{what} is not installed ({install}; .ci/run does this)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def dash_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("dashboard-data")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path_factory.mktemp("dashboard-screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots in {directory}")
    return directory


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-downloads")


@pytest.fixture(scope="module")
def driver(downloads: Path) -> Iterator[Any]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        missing("chromium or chromium-driver", "apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium", "pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    browser = webdriver.Chrome(options=options, service=Service(chromedriver))
    browser.set_page_load_timeout(WAIT)
    browser.set_script_timeout(WAIT)
    try:
        yield browser
    finally:
        browser.quit()


class Dashboard:
    """The browser on the dashboard of ``broker``, with the waits and lookups the tests share."""

    def __init__(self, driver: Any, broker: BrokerProcess, screenshots: Path) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.broker, self.screenshots, self.by = driver, broker, screenshots, By
        self.base = f"http://127.0.0.1:{broker.management_port}/"
        # the page redraws its data every second: an element found a moment ago may be gone, so look again
        self._wait = WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])

    def until(self, condition: Callable[[Any], Any], what: str) -> Any:
        return self._wait.until(lambda _: condition(self.driver), message=f"waiting for {what}")

    def find(self, css: str) -> Any:
        return self.until(lambda d: next(iter(d.find_elements(self.by.CSS_SELECTOR, css)), None), css)

    def all(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(self.by.CSS_SELECTOR, css))

    def text(self, css: str, expected: str) -> Any:
        """The first element matching ``css`` once its text contains ``expected``."""

        def match(d: Any) -> Any:
            return next((e for e in d.find_elements(self.by.CSS_SELECTOR, css) if expected in e.text), None)

        return self.until(match, f"{css} containing {expected!r}")

    def click(self, css: str, expected: str, inner: str | None = None) -> None:
        """Clicks the first ``css`` element whose text contains ``expected`` (or the ``inner`` element in it),
        found again if the page redrew it meanwhile."""

        def clicked(d: Any) -> bool:
            element = next((e for e in d.find_elements(self.by.CSS_SELECTOR, css) if expected in e.text), None)
            if element is None:
                return False
            (element.find_element(self.by.CSS_SELECTOR, inner) if inner else element).click()
            return True

        self.until(clicked, f"{css} containing {expected!r} to click")

    def go(self, route: str, heading: str) -> None:
        self.driver.execute_script("location.hash = arguments[0]", route)
        self.text("#page h1", heading)

    def fill(self, form: Any, **values: str) -> None:
        from selenium.webdriver.support.ui import Select

        for name, value in values.items():
            field = form.find_element(self.by.NAME, name)
            if field.tag_name == "select":
                Select(field).select_by_visible_text(value)
            else:
                field.clear()
                field.send_keys(value)

    def log_in(self, username: str, password: str) -> None:
        login = self.find("#login")
        self.fill(login, username=username, password=password)
        login.find_element(self.by.CSS_SELECTOR, "button").click()

    def select(self, css: str, option: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(css)).select_by_visible_text(option)

    def form_with(self, button: str) -> Any:
        return self.text("#page form", button)

    def flash(self, expected: str) -> None:
        self.text("#flash span", expected)

    def screenshot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.screenshots / f"{name}.png"))

    def console_errors(self) -> list[dict[str, Any]]:
        """What the page logged at error level since the last call (get_log drains the log)."""
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture
def dashboard(driver: Any, dash_broker: BrokerProcess, screenshots: Path) -> Iterator[Dashboard]:
    """Logged in as guest, refreshing every second; asserts afterwards that the console stayed clean."""
    page = Dashboard(driver, dash_broker, screenshots)
    if not driver.current_url.startswith(page.base):
        driver.get(page.base)
    page.until(lambda d: page.find("#login").is_displayed() or page.find("#who").text, "the login form or a session")
    if page.find("#login").is_displayed():
        page.log_in("guest", "guest")
        page.text("#who", "guest (administrator)")
    page.select("#refresh", "1 s")
    page.console_errors()
    yield page
    assert page.driver.execute_script("return window.__pwned") is None
    errors = page.console_errors()
    assert not errors, f"browser console errors: {errors}"


@pytest.fixture
def amqp(dash_broker: BrokerProcess) -> Iterator[BlockingChannel]:
    params = pika.URLParameters(dash_broker.url)
    params.socket_timeout, params.blocked_connection_timeout = TIMEOUT, 2 * TIMEOUT
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    try:
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def depth(channel: BlockingChannel, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def test_login_with_the_brokers_users(dashboard: Dashboard) -> None:
    dashboard.find("#logout").click()
    dashboard.log_in("guest", "wrong")
    dashboard.text("#login-error", "Login refused: Login failed")
    dashboard.console_errors()  # the refused login's 401, expected
    assert dashboard.driver.get_cookies() == []  # credentials never go into a cookie
    dashboard.log_in("guest", "guest")
    dashboard.text("#who", "guest (administrator)")
    dashboard.text("#page h1", "Overview")
    assert dashboard.driver.get_cookies() == []
    assert dashboard.driver.execute_script("return localStorage.length") == 0  # only this tab's sessionStorage


def points(path_data: str) -> int:
    return path_data.count("L") + 1 if path_data.startswith("M") else 0


def test_overview_plots_queued_messages_over_time(dashboard: Dashboard, amqp: BlockingChannel) -> None:
    queue = f"dash-{uuid.uuid4().hex[:8]}"
    amqp.queue_declare(queue)
    for n in range(3):
        amqp.basic_publish("", queue, f"m{n}".encode())
    dashboard.go("#/overview", "Overview")
    ready = 'figure[class="plot-box"] path[data-series="ready"]'
    dashboard.until(lambda d: points(dashboard.find(ready).get_attribute("d")) >= 3, "three samples in the plot")
    dashboard.text(".legend li", "ready")
    dashboard.text("#page .tile", "queues")  # the totals
    dashboard.text("#page table", "amqp")  # the listeners
    dashboard.text("#page table", "rabbit@")  # the node: memory, file descriptors, disk
    dashboard.screenshot("overview")
    # the plot's history outlives a reload of the page (it is kept in the tab's sessionStorage)
    before = points(dashboard.find(ready).get_attribute("d"))
    dashboard.driver.refresh()
    dashboard.text("#page h1", "Overview")
    dashboard.until(
        lambda d: points(dashboard.find(ready).get_attribute("d")) > before, "the old samples and a new one"
    )
    amqp.queue_delete(queue)


def rows(dashboard: Dashboard) -> list[str]:
    return [row.text for row in dashboard.all("#page .list-body tbody tr")]


def test_queues_are_listed_filtered_sorted_and_paged(dashboard: Dashboard, amqp: BlockingChannel) -> None:
    prefix = f"list-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{n:02}" for n in range(25)]
    for name in names:
        amqp.queue_declare(name)
    amqp.basic_publish("", names[3], b"one")
    dashboard.go("#/queues", "Queues")
    search = dashboard.find("#page input.filter")
    search.clear()
    search.send_keys(prefix)
    dashboard.select("#page select[aria-label='page size']", "20 per page")
    dashboard.text("#page .pager-status", "page 1 of 2 · 25 of")
    dashboard.until(lambda d: len(rows(dashboard)) == 20 and names[0] in rows(dashboard)[0], "the first page")
    dashboard.click("#page th.sortable", "Name")  # sorted by name already: now reversed
    dashboard.until(lambda d: rows(dashboard) and names[-1] in rows(dashboard)[0], "the reversed order")
    dashboard.click("#page button", "Next")
    dashboard.text("#page .pager-status", "page 2 of 2")
    dashboard.until(lambda d: len(rows(dashboard)) == 5 and names[4] in rows(dashboard)[0], "the second page")
    dashboard.click("#page th.sortable", "Ready")  # a new sort key: ascending, from page 1
    dashboard.text("#page th.sortable", "Ready ▲")
    dashboard.text("#page .pager-status", "page 1 of 2")
    dashboard.click("#page th.sortable", "Ready")
    dashboard.until(lambda d: rows(dashboard) and names[3] in rows(dashboard)[0], "the one with a message first")
    regex = dashboard.find("#page input[aria-label='regular expression']")
    regex.click()
    search.clear()
    search.send_keys(f"^{prefix}-0[0-4]$")
    dashboard.text("#page .pager-status", "page 1 of 1 · 5 of")
    regex.click()  # back to substrings for the other tests (the choice is kept in the tab)
    dashboard.screenshot("queues")
    dashboard.go("#/overview", "Overview")  # deleting them under the open page 2 would make it answer 400
    for name in names:
        amqp.queue_delete(name)


def test_a_queue_page_gets_publishes_and_purges(dashboard: Dashboard, amqp: BlockingChannel) -> None:
    queue = f"page-{uuid.uuid4().hex[:8]}"
    amqp.queue_declare(queue, arguments={"x-max-length": 100})
    amqp.basic_publish("", queue, b"from pika", pika.BasicProperties(headers={"origin": "pika"}))
    dashboard.go("#/queues", "Queues")
    search = dashboard.find("#page input.filter")
    search.clear()
    search.send_keys(queue)
    dashboard.until(lambda d: len(rows(dashboard)) == 1, "only the one queue listed")
    dashboard.click("#page .list-body a", queue)
    dashboard.text("#page h1", queue)
    dashboard.text("#page dl.fields", "x-max-length")  # its arguments

    publish = dashboard.form_with("Publish")
    dashboard.fill(publish, payload="from the dashboard", headers='{"origin": "browser"}')
    publish.find_element(dashboard.by.CSS_SELECTOR, "button").click()
    dashboard.flash("Message published")
    assert depth(amqp, queue) == 2

    get = dashboard.form_with("Get messages")
    dashboard.fill(get, ackmode="ack_requeue_false", count="2")
    get.find_element(dashboard.by.CSS_SELECTOR, "button").click()
    dashboard.until(lambda d: len(dashboard.all("#page article.message")) == 2, "two messages shown")
    payloads = [e.text for e in dashboard.all("#page article.message pre.payload")]
    assert payloads == ["from pika", "from the dashboard"]
    dashboard.text("#page article.message", '{"origin":"browser"}')
    assert depth(amqp, queue) == 0  # ack_requeue_false took them

    amqp.basic_publish("", queue, b"to purge")
    dashboard.until(lambda d: points(dashboard.find('path[data-series="ready"]').get_attribute("d")) >= 2, "a plot")
    dashboard.text("#page dl.fields", "messages\n1")
    dashboard.screenshot("queue")
    dashboard.click("#page button.danger", "Purge")
    dashboard.click("#page button.danger", "Confirm: Purge")
    dashboard.flash("Queue purged")
    assert depth(amqp, queue) == 0

    dashboard.click("#page button.danger", "Delete")
    dashboard.click("#page button.danger", "Confirm: Delete")
    dashboard.text("#page h1", "Queues")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        depth(amqp, queue)


def test_closing_a_connection_sends_the_client_320_with_the_reason(
    dashboard: Dashboard, dash_broker: BrokerProcess
) -> None:
    name = f"victim-{uuid.uuid4().hex[:8]}"
    params = pika.URLParameters(dash_broker.url)
    params.socket_timeout, params.client_properties = TIMEOUT, {"connection_name": name}
    victim = pika.BlockingConnection(params)
    try:
        victim.channel()
        dashboard.go("#/connections", "Connections")
        search = dashboard.find("#page input.filter")
        search.clear()
        search.send_keys("127.0.0.1")  # connections are named "peer -> broker"
        dashboard.click("#page .list-body tr", name, inner="a")
        dashboard.text("#page h1", "Connection")
        dashboard.text("#page dl.fields", name)  # among its client properties
        dashboard.screenshot("connection")
        close = dashboard.form_with("Close connection")
        dashboard.fill(close, reason="closed by the dashboard test")
        close.find_element(dashboard.by.CSS_SELECTOR, "button").click()
        dashboard.flash("Connection closed")
        dashboard.text("#page h1", "Connections")
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            for _ in range(int(WAIT * 10)):
                victim.process_data_events(0.1)
        assert closed.value.reply_code == 320
        assert closed.value.reply_text == "CONNECTION_FORCED - closed by the dashboard test"
    finally:
        if victim.is_open:
            victim.close()


def test_markup_in_names_bodies_and_headers_stays_text(
    dashboard: Dashboard, amqp: BlockingChannel, dash_broker: BrokerProcess
) -> None:
    """A queue name, a body, a header and a client property full of markup: shown as typed, nothing runs
    (the fixture checks window.__pwned and that the console has no CSP violation either)."""
    queue = f"xss-{uuid.uuid4().hex[:6]}{HOSTILE}"
    amqp.queue_declare(queue)
    amqp.basic_publish("", queue, HOSTILE.encode(), pika.BasicProperties(headers={"h": HOSTILE}, type=HOSTILE))
    params = pika.URLParameters(dash_broker.url)
    params.socket_timeout, params.client_properties = TIMEOUT, {"connection_name": HOSTILE, "product": HOSTILE}
    hostile_client = pika.BlockingConnection(params)
    try:
        dashboard.go("#/queues", "Queues")
        search = dashboard.find("#page input.filter")
        search.clear()
        search.send_keys("xss-")
        dashboard.click("#page .list-body a", HOSTILE)
        dashboard.text("#page h1", queue)
        get = dashboard.form_with("Get messages")
        get.find_element(dashboard.by.CSS_SELECTOR, "button").click()
        dashboard.text("#page article.message pre.payload", HOSTILE)
        dashboard.text("#page article.message dl.fields", json.dumps({"h": HOSTILE}, separators=(",", ":")))
        assert (
            dashboard.driver.execute_script("return document.querySelectorAll('#page img, #page script').length") == 0
        )
        dashboard.go("#/connections", "Connections")
        dashboard.find("#page input.filter").clear()
        dashboard.text("#page .list-body", HOSTILE)  # the client-given name and product
        dashboard.click("#page .list-body tr", HOSTILE, inner="a")
        dashboard.text("#page dl.fields", HOSTILE)
        assert (
            dashboard.driver.execute_script("return document.querySelectorAll('#page img, #page script').length") == 0
        )
        dashboard.screenshot("escaping")
    finally:
        hostile_client.close()
        dashboard.go("#/overview", "Overview")
        amqp.queue_delete(queue)


def test_an_exchange_page_shows_bindings_and_publishes(dashboard: Dashboard, amqp: BlockingChannel) -> None:
    exchange, queue = f"ex-{uuid.uuid4().hex[:8]}", f"bound-{uuid.uuid4().hex[:8]}"
    amqp.exchange_declare(exchange, "topic")
    amqp.queue_declare(queue)
    amqp.queue_bind(queue, exchange, "orders.*")
    dashboard.go("#/exchanges", "Exchanges")
    search = dashboard.find("#page input.filter")
    search.clear()
    search.send_keys(exchange)
    dashboard.click("#page .list-body a", exchange)
    dashboard.text("#page h1", exchange)
    dashboard.text("#page table", "orders.*")  # the binding to the queue
    publish = dashboard.form_with("Publish")
    dashboard.fill(publish, routing_key="orders.new", payload="routed by topic")
    publish.find_element(dashboard.by.CSS_SELECTOR, "button").click()
    dashboard.flash("Message published")
    dashboard.screenshot("exchange")
    dashboard.fill(publish, routing_key="nowhere")
    publish.find_element(dashboard.by.CSS_SELECTOR, "button").click()
    dashboard.flash("not routed")
    assert depth(amqp, queue) == 1
    method, _, body = amqp.basic_get(queue, auto_ack=True)
    assert method is not None and body == b"routed by topic"
    dashboard.go("#/exchanges", "Exchanges")
    amqp.queue_delete(queue)
    amqp.exchange_delete(exchange)


def test_channels_consumers_admin_definitions_and_tail_pages(
    dashboard: Dashboard, amqp: BlockingChannel, tmp_path: Path, downloads: Path
) -> None:
    queue = f"consumed-{uuid.uuid4().hex[:8]}"
    amqp.queue_declare(queue)
    amqp.basic_consume(queue, lambda *args: None, consumer_tag=f"tag-{queue}")
    dashboard.go("#/channels", "Channels")
    dashboard.find("#page input.filter").clear()
    dashboard.text("#page .list-body", "127.0.0.1")
    dashboard.screenshot("channels")
    dashboard.go("#/consumers", "Consumers")
    dashboard.text("#page .list-body", f"tag-{queue}")
    dashboard.screenshot("consumers")

    dashboard.go("#/admin", "Admin")
    vhost = f"vh-{uuid.uuid4().hex[:6]}"
    add = dashboard.form_with("Add vhost")
    dashboard.fill(add, name=vhost)
    add.find_element(dashboard.by.CSS_SELECTOR, "button").click()
    dashboard.flash("Vhost added")
    dashboard.text("#page table", vhost)
    dashboard.text("#page table", "guest")  # users and permissions
    dashboard.screenshot("admin")

    dashboard.go("#/definitions", "Definitions")
    imported = f"imported-{uuid.uuid4().hex[:8]}"
    definitions = {"queues": [{"name": imported, "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}]}
    file = tmp_path / "definitions.json"
    file.write_text(json.dumps(definitions))
    dashboard.find("#page input[type=file]").send_keys(str(file))
    dashboard.click("#page button", "Upload definitions")
    dashboard.flash("Definitions imported")
    assert depth(amqp, imported) == 0  # declared by the upload (passive declare would fail otherwise)
    dashboard.click("#page button", "Download definitions")
    saved = downloads / "definitions.json"
    dashboard.until(lambda d: saved.is_file() and saved.stat().st_size > 0, "the downloaded definitions")
    assert imported in [q["name"] for q in json.loads(saved.read_text())["queues"]]
    dashboard.screenshot("definitions")
    amqp.queue_delete(imported)

    dashboard.go("#/tail", "Live message tail")
    dashboard.text("#page .pager-status", "stopped")
    dashboard.screenshot("tail")


def test_the_pages_follow_the_users_tags(dashboard: Dashboard, dash_broker: BrokerProcess) -> None:
    """A management-only user sees no Admin or Definitions page and no node figures (the API would refuse)."""
    from .management_client import Api

    api = Api(f"http://127.0.0.1:{dash_broker.management_port}")
    user = f"dev-{uuid.uuid4().hex[:6]}"
    api.put(f"/api/users/{user}", {"password": "pw", "tags": "management"})
    api.put(f"/api/permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
    dashboard.go("#/overview", "Overview")
    dashboard.find("#logout").click()
    dashboard.log_in(user, "pw")
    try:
        dashboard.text("#who", f"{user} (management)")
        dashboard.text("#page h1", "Overview")
        dashboard.text("#page h2", "Totals")
        shown = [a.text for a in dashboard.all("#nav a") if a.is_displayed()]
        assert "Queues" in shown and "Admin" not in shown and "Definitions" not in shown
        assert not [h2.text for h2 in dashboard.all("#page h2") if h2.text in ("Node", "Listeners")]
        dashboard.driver.execute_script("location.hash = '#/admin'")  # typed by hand: the overview instead
        dashboard.text("#nav a.active", "Overview")
    finally:
        dashboard.find("#logout").click()
        dashboard.log_in("guest", "guest")
        dashboard.text("#who", "guest (administrator)")
        api.delete(f"/api/users/{user}")


def test_a_page_whose_object_went_away_says_so(dashboard: Dashboard, amqp: BlockingChannel) -> None:
    queue = f"doomed-{uuid.uuid4().hex[:8]}"
    amqp.queue_declare(queue)
    dashboard.go(f"#/queues/%2F/{queue}", queue)
    amqp.queue_delete(queue)
    dashboard.text("#page h1", "Not found")
    errors = dashboard.console_errors()  # the one refresh that found it gone, then no more
    assert errors and all("404" in error["message"] for error in errors)
    dashboard.go("#/exchanges/%2F/amq.default", "amq.default")  # the default exchange has a page too
    dashboard.text("#page", "Every queue, by its name.")


def test_the_live_tail_shows_messages_as_they_pass(dashboard: Dashboard, amqp: BlockingChannel) -> None:
    queue = f"tailed-{uuid.uuid4().hex[:8]}"
    amqp.queue_declare(queue)
    dashboard.go("#/tail", "Live message tail")
    dashboard.select("#page select[aria-label=scope]", "queue")
    name = dashboard.find("#page input[aria-label=name]")
    name.clear()
    name.send_keys(queue)
    dashboard.click("#page button", "Start")
    dashboard.text("#page .pager-status", "watching")
    # the stream is open once its first heartbeat is in; publish until the tail shows the message
    dashboard.until(
        lambda d: amqp.basic_publish("", queue, f"tail {HOSTILE}".encode()) or dashboard.all("#page ol.tail li"),
        "the published message in the tail",
    )
    dashboard.text("#page ol.tail li", f"tail {HOSTILE}")
    dashboard.text("#page ol.tail li", "publish")
    assert depth(amqp, queue) >= 1  # watching consumed nothing
    dashboard.screenshot("tail")
    dashboard.click("#page button", "Pause")
    dashboard.text("#page .pager-status", "paused")
    dashboard.click("#page button", "Clear")
    dashboard.until(lambda d: not dashboard.all("#page ol.tail li"), "an empty tail")
    dashboard.go("#/overview", "Overview")
    amqp.queue_delete(queue)
