"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real server and engine."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.e2e.dashboard_app import XSS, Dashboard, approvals, checkout, many, parked, payload, priced, serve, switch

CHROMIUM = os.environ.get("PLAIT_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE = 10_000  # ms a live change may take to show (it normally takes well under one second)
expect.set_options(timeout=LIVE)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def dash(sqlite_url: str) -> Iterator[Dashboard]:
    with serve(sqlite_url) as dashboard:
        yield dashboard


@pytest.fixture
def page(browser: Browser, dash: Dashboard) -> Iterator[Page]:
    context = browser.new_context(base_url=dash.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(LIVE)
    yield page
    context.close()


def node(page: Page, step: str) -> Locator:
    return page.locator(f'svg.graph g.node[data-step="{step}"]')


def test_runs_table_lists_filters_searches_and_shows_new_runs_live(page: Page, dash: Dashboard, shots: Path) -> None:
    failed = dash.engine.start(checkout, {"customer": "ann", "amount": 1})
    with pytest.raises(Exception, match="declined"):
        failed.result(10)
    keyed = dash.engine.start(parked, 1, idempotency_key="order-42")
    page.goto("/")
    expect(page.locator(f'tr[data-run="{failed.id}"]')).to_contain_text("failed")
    expect(page.locator(f'tr[data-run="{keyed.id}"]')).to_contain_text("parked")
    page.screenshot(path=shots / "runs-light.png")

    page.select_option('select[name="status"]', "failed")
    page.click("text=Filter")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-run="{failed.id}"]')).to_be_visible()

    page.goto("/")
    page.fill('input[name="q"]', "order-42")
    page.click("text=Filter")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-run="{keyed.id}"]')).to_be_visible()

    page.goto("/")
    page.evaluate("window.__same_page = true")
    fresh = dash.engine.start(parked, 2)
    expect(page.locator(f'tr[data-run="{fresh.id}"]')).to_be_visible()
    assert page.evaluate("window.__same_page") is True  # appeared without a reload

    page.emulate_media(color_scheme="dark")
    page.screenshot(path=shots / "runs-dark.png")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_failed_run_is_red_and_retry_turns_it_green_live(page: Page, dash: Dashboard, shots: Path) -> None:
    run = dash.engine.start(checkout, {"customer": "bob", "amount": 2})
    with pytest.raises(Exception, match="declined"):
        run.result(10)
    page.goto(f"/runs/{run.id}")
    expect(node(page, "prepare")).to_have_attribute("data-status", "succeeded")
    expect(node(page, "charge")).to_have_attribute("data-status", "failed")
    expect(page.locator("#run-error")).to_contain_text("card declined for bob")
    page.screenshot(path=shots / "run-failed-light.png", full_page=True)
    page.evaluate("window.__same_page = true")

    switch["fail"] = False
    page.click('#run-actions button:text("Retry")')
    expect(node(page, "charge")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("h1 .status")).to_have_text("succeeded")
    assert page.evaluate("window.__same_page") is True
    assert run.result(10) == "charged bob 2"
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=shots / "run-dark.png", full_page=True)


def test_bulk_retry_of_everything_matching_a_filter(page: Page, dash: Dashboard) -> None:
    runs = [dash.engine.start(checkout, {"customer": f"c{i}", "amount": i}) for i in range(3)]
    for run in runs:
        with pytest.raises(Exception, match="declined"):
            run.result(10)
    switch["fail"] = False
    page.goto("/?status=failed")
    page.click('button:text("Retry all matching")')
    expect(page.locator(".note")).to_have_text("Done.")
    for run in runs:
        assert run.result(10).startswith("charged")


def test_approve_through_the_form_built_from_the_schema(page: Page, dash: Dashboard) -> None:
    run = dash.engine.start(approvals, 7)
    page.goto(f"/runs/{run.id}")
    expect(node(page, "review")).to_have_attribute("data-status", "waiting")
    page.fill('#approval input[name="f.note"]', "looks fine")
    page.fill('#approval input[name="f.amount"]', "40")
    page.click('#approval button:text("Approve")')
    expect(page.locator("h1 .status")).to_have_text("succeeded")
    assert run.result(10) == "approved=True note=looks fine"


def test_rerun_from_a_step_picked_on_the_graph_lands_on_the_new_run(page: Page, dash: Dashboard) -> None:
    switch["fail"] = False
    run = dash.engine.start(checkout, {"customer": "cy", "amount": 3})
    run.result(10)
    page.goto(f"/runs/{run.id}")
    node(page, "charge").click()
    page.click('#step-charge button:text("Rerun from charge")')
    expect(page).not_to_have_url(re.compile(f"/runs/{run.id}$"))
    expect(page.locator("dl.facts")).to_contain_text(re.compile(f"Rerun of\\s*{run.id}"))
    new_id = page.url.split("/runs/", 1)[1].split("?", 1)[0]
    assert new_id != run.id
    assert dash.engine.get_run(new_id).result(10) == "charged cy 3"


def test_cancel_from_the_browser_and_compare_two_runs(page: Page, dash: Dashboard) -> None:
    waiting = dash.engine.start(parked, 1)
    page.goto(f"/runs/{waiting.id}")
    page.click('#run-actions button:text("Cancel")')
    expect(page.locator("h1 .status")).to_have_text("cancelled")

    switch["fail"] = False
    a = dash.engine.start(checkout, {"customer": "a", "amount": 1})
    b = dash.engine.start(checkout, {"customer": "b", "amount": 2})
    a.result(10), b.result(10)
    page.goto("/")
    page.check(f'input[value="{a.id}"]')
    page.check(f'input[value="{b.id}"]')
    page.click('button:text("Compare two selected")')
    expect(page.locator("table.compare")).to_contain_text("charged a 1")
    expect(page.locator("table.compare")).to_contain_text("charged b 2")


def test_user_data_renders_as_text(page: Page, dash: Dashboard) -> None:
    ok = dash.engine.start(payload, XSS, idempotency_key=XSS)
    ok.result(10)
    bad = dash.engine.start(payload, "fail")
    with pytest.raises(Exception, match="ValueError"):
        bad.result(10)
    page.on("dialog", lambda dialog: dialog.dismiss())
    for url in ("/", f"/runs/{ok.id}", f"/runs/{bad.id}", f"/compare?run_id={ok.id}&run_id={bad.id}"):
        page.goto(url)
        if url != "/":
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            expect(page.locator("main")).to_contain_text("<script>window.__pwned = 1</script>")
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main script, main img").count() == 0


def test_login_cookie_csrf_read_scope_and_other_namespace(browser: Browser, dash: Dashboard) -> None:
    writer, reader, stranger = (
        dash.token("default", "write"),
        dash.token("default", "read"),
        dash.token("other", "write"),
    )
    failed = dash.engine.start(checkout, {"customer": "dee", "amount": 4})
    with pytest.raises(Exception, match="declined"):
        failed.result(10)
    context = browser.new_context(base_url=dash.url)
    page = context.new_page()
    page.set_default_timeout(LIVE)

    page.goto(f"/runs/{failed.id}")
    expect(page).to_have_url(re.compile("/login"))
    page.fill('input[name="token"]', "plt_nope_nope")
    page.click('button:text("Log in")')
    expect(page.locator(".error")).to_contain_text("unknown or revoked")
    page.fill('input[name="token"]', reader)
    page.click('button:text("Log in")')
    expect(page).to_have_url(re.compile(f"/runs/{failed.id}$"))
    cookie = next(c for c in context.cookies() if c["name"] == "plait_session")
    assert cookie.get("httpOnly") and cookie.get("sameSite") == "Strict"
    assert page.evaluate("document.cookie") == ""
    expect(node(page, "charge")).to_have_attribute("data-status", "failed")
    assert page.locator("main button").count() == 0  # a read token sees no actions
    csrf = page.locator('header input[name="csrf"]').get_attribute("value")
    forged = page.request.post(f"/runs/{failed.id}/retry", form={"csrf": csrf or ""}, max_redirects=0)
    assert forged.status == 403
    assert dash.engine.get_run(failed.id).status == "failed"
    page.goto("/")
    assert page.locator('button:text("Retry selected")').count() == 0
    for path in ("/usage", "/documents", "/workflows", f"/runs/{failed.id}/steps/charge"):
        page.goto(path)
        assert page.locator("main form[method=post]").count() == 0, path

    page.click('button:text("Log out")')
    page.fill('input[name="token"]', writer)
    page.click('button:text("Log in")')
    page.goto(f"/runs/{failed.id}")
    expect(page.locator('#run-actions button:text("Retry")')).to_be_visible()
    no_csrf = page.request.post(f"/runs/{failed.id}/cancel", form={}, max_redirects=0)
    assert no_csrf.status == 403
    csrf = page.locator('header input[name="csrf"]').get_attribute("value")
    with_csrf = page.request.post(f"/runs/{failed.id}/cancel", form={"csrf": csrf or ""}, max_redirects=0)
    assert with_csrf.status == 303  # the session's own CSRF value passes (cancel of a failed run is a no-op)

    page.click('button:text("Log out")')
    page.fill('input[name="token"]', stranger)
    page.click('button:text("Log in")')
    response = page.goto(f"/runs/{failed.id}")
    assert response is not None and response.status == 404
    expect(page.locator("main")).to_contain_text("Not found")
    context.close()


def test_without_tokens_only_loopback_names_are_served(dash: Dashboard) -> None:
    assert httpx.get(dash.url + "/").status_code == 200
    rebound = httpx.get(dash.url + "/", headers={"Host": "attacker.example"})
    # The app's Host guard answers before the dashboard: a rebound name never reaches a page.
    assert rebound.status_code == 400
    assert "does not answer for Host 'attacker.example'" in rebound.text


def test_pages_render_on_postgres(postgres_url: str) -> None:
    with serve(postgres_url) as dash:
        switch["fail"] = False
        run = dash.engine.start(checkout, {"customer": "pg", "amount": 5})
        run.result(10)
        dash.engine.start(priced, "pg").result(10)
        dash.engine.save_document(
            {"id": "doc", "blocks": [{"id": "nap", "type": "wait.duration", "params": {"seconds": 0}}]}
        )
        pages = ["/", f"/runs/{run.id}", "/workflows/checkout", "/schedules", "/webhooks", "/?status=succeeded"]
        pages += ["/?text=pg", "/?after=2001-01-01T00:00", f"/runs/{run.id}/steps/charge", "/workflows"]
        pages += ["/documents", "/documents/doc", "/usage?since=all"]
        for path in pages:
            response = httpx.get(dash.url + path)
            assert response.status_code == 200, path
        assert 'data-status="succeeded"' in httpx.get(f"{dash.url}/runs/{run.id}").text
        assert "gpt-4o" in httpx.get(f"{dash.url}/usage?since=all").text


def test_runs_page_cost_time_filter_text_search_and_cancel_reason(page: Page, dash: Dashboard) -> None:
    paid = dash.engine.start(priced, "needle in a haystack")
    assert paid.result(10) == "answer to needle in a haystack"
    other = dash.engine.start(priced, "plain hay")
    other.result(10)
    stopped = dash.engine.start(parked, 3)
    dash.engine.cancel(stopped.id, reason=XSS)
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto("/")
    expect(page.locator(f'tr[data-run="{paid.id}"]')).to_contain_text("$0.5000")
    expect(page.locator(f'tr[data-run="{stopped.id}"] .cancel-reason')).to_have_text(XSS)
    assert page.evaluate("window.__pwned") is None

    page.fill('input[name="text"]', "NEEDLE")
    page.click("text=Filter")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-run="{paid.id}"]')).to_be_visible()
    expect(page.locator("#scanned")).to_contain_text("latest 3 runs")

    page.goto("/")
    page.fill('input[name="before"]', "2001-01-01T00:00")
    page.click("text=Filter")
    expect(page.locator("table.runs tbody")).to_contain_text("No runs match")
    page.fill('input[name="before"]', "")
    page.fill('input[name="after"]', "2001-01-01T00:00")
    page.click("text=Filter")
    expect(page.locator("table.runs tbody tr")).to_have_count(3)

    page.goto(f"/runs/{stopped.id}")
    expect(page.locator("#cancel-reason")).to_have_text(XSS)
    assert page.evaluate("window.__pwned") is None


def test_run_page_usage_waits_lazy_steps_and_artifacts(page: Page, dash: Dashboard) -> None:
    paid = dash.engine.start(priced, "why")
    paid.result(10)
    page.goto(f"/runs/{paid.id}")
    expect(page.locator("#run-usage")).to_contain_text("1,000 in · 200 out · $0.5000 · gpt-4o")
    page.locator("#step-think summary").click()
    expect(page.locator("#step-think .usage")).to_contain_text("Usage: 1,000 in · 200 out · $0.5000 · gpt-4o")
    if hasattr(paid, "artifacts"):  # engines with artifacts list them with a download link
        link = page.locator('#artifacts a:text("notes/answer.txt")')
        with page.expect_download() as download:
            link.click()
        assert Path(download.value.path()).read_text() == "answer to why"

    waiting = dash.engine.start(parked, 4)
    page.goto(f"/runs/{waiting.id}")
    expect(page.locator("svg.timeline .bar.k-wait.s-waiting")).to_have_count(1)
    expect(page.locator("svg.timeline .bar.k-wait title")).to_contain_text("event")
    dash.engine.send_event(waiting.id, "go", {"ok": True})
    expect(page.locator("h1 .status")).to_have_text("succeeded")  # live, then the wait is over
    expect(page.locator("svg.timeline .bar.k-wait.s-waited")).to_have_count(1)

    long_run = dash.engine.start(many, 0)
    assert long_run.result(10) == 25
    page.goto(f"/runs/{long_run.id}")
    panel = page.locator("#step-m07")
    expect(panel).to_have_attribute("data-lazy", re.compile("/steps/m07$"))
    assert page.locator(".step-body").count() == 0  # a long run's page lists summaries only
    node(page, "m07").click()  # a node picked on the graph opens its panel, which fetches its details
    expect(panel.locator(".step-body")).to_contain_text("8")
    expect(panel.locator('button:text("Rerun from m07")')).to_be_visible()


def test_documents_and_usage_pages_escape_user_data(page: Page, dash: Dashboard) -> None:
    document = {
        "id": "greeter",
        "description": XSS,
        "blocks": [{"id": "pause", "type": "wait.duration", "params": {"seconds": 0}}],
        "output": XSS,
    }
    assert dash.engine.save_document(document) == 1
    patched = dash.engine.patch_document(
        "greeter", [{"op": "update_block", "id": "pause", "params": {"seconds": 1}}], actor="llm"
    )
    assert patched.version == 2
    dash.engine.start(priced, XSS).result(10)
    page.on("dialog", lambda dialog: dialog.dismiss())

    page.goto("/documents")
    page.click('#documents a:text("greeter")')
    expect(page.locator("#document-description")).to_have_text(XSS)
    expect(page.locator("#blocks")).to_contain_text("wait.duration")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    expect(page.locator("#versions tbody tr").first).to_contain_text("update_block")
    expect(page.locator("#versions tbody tr").first).to_contain_text("llm")
    page.click('#versions a:text-is("1")')
    expect(page.locator("h1")).to_contain_text("version 1 (latest is 2)")
    expect(page.locator("#blocks")).to_contain_text('"seconds": 0')
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img").count() == 0

    page.goto("/workflows")
    expect(page.locator("#workflow-documents")).to_contain_text("greeter")
    page.goto("/workflows/priced")
    expect(page.locator("#p50-cost")).to_have_text("$0.7500")

    page.goto("/usage?since=all")
    expect(page.locator("#usage-workflow")).to_contain_text("priced")
    expect(page.locator("#usage-model")).to_contain_text("gpt-4o")
    expect(page.locator("#usage-model")).to_contain_text(XSS)
    expect(page.locator("#usage-day tbody tr")).to_have_count(1)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img").count() == 0


def test_tab_reaches_cancel_with_a_visible_focus_and_enter_presses_it(page: Page, dash: Dashboard) -> None:
    waiting = dash.engine.start(parked, 5)
    page.goto(f"/runs/{waiting.id}")
    expect(page.locator("h1 .status")).to_have_text("waiting")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Cancel":
            break
    else:
        pytest.fail("Tab never reached the Cancel button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    page.keyboard.press("Enter")
    expect(page.locator("h1 .status")).to_have_text("cancelled")
