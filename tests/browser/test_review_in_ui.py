"""A reviewer decides in the real Prefect UI: headless Chromium fills the pause form and submits it.

Needs Debian's `chromium` and `chromium-driver` (scripts/install-browser.sh) and selenium (the
`test` extra). Starts its own `prefect server start` on a free loopback port with a temporary
PREFECT_HOME, runs `augment run --review ui` against it in a subprocess, and checks that the
export holds exactly what was entered in the form. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromium-driver: run scripts/install-browser.sh"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[test]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
COMPANIES = ROOT / "examples" / "data" / "companies.csv"
TEMPLATE = ROOT / "examples" / "templates" / "company-profile.yaml"
NEW_SUMMARY = "Builds dashboards and forecasts for logistics firms."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on loopback with its own PREFECT_HOME; yields the API URL."""
    port, home = free_port(), tmp_path_factory.mktemp("prefect-home")
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "true", "PREFECT_API_URL": api, "PREFECT_UI_API_URL": api}
    log = (home / "server.log").open("w")
    prefect = Path(sys.executable).parent / "prefect"
    server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prefect server did not answer /api/health within 90 s")
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group, started above
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def paused_review_run(api: str, timeout: float = 120) -> dict[str, Any]:
    """The review flow run once it is PAUSED and has saved its form (the UI needs the schema)."""
    query = {"flows": {"name": {"any_": ["review"]}}, "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = httpx.post(f"{api}/flow_runs/filter", json=query, timeout=10).json()
        if runs:
            run = runs[0]
            schema_key = run["state"]["state_details"]["run_input_keyset"]["schema"]
            if httpx.get(f"{api}/flow_runs/{run['id']}/input/{schema_key}", timeout=10).status_code == 200:
                return run
        time.sleep(0.5)
    raise TimeoutError("no review run paused with its form in time")


def form_property(driver: WebDriver, label: str) -> WebElement:
    """One field of the pause form, found by its label (e.g. 'Reject Ids')."""
    for element in driver.find_elements(By.CSS_SELECTOR, ".p-modal .schema-form-property"):
        names = element.find_elements(By.CSS_SELECTOR, ".schema-form-property__label")
        if names and names[0].text.split(" (")[0] == label:
            return element
    raise AssertionError(f"the form has no field labelled {label!r}")


def add_item(driver: WebDriver, label: str) -> WebElement:
    field = form_property(driver, label)
    field.find_element(By.XPATH, ".//button[contains(normalize-space(.), 'Add item')]").click()
    WebDriverWait(driver, 10).until(
        lambda _: field.find_elements(By.CSS_SELECTOR, ".p-draggable-list__item, .p-draggable-list li"))
    return field


def type_into(element: WebElement, text: str) -> None:
    element.click()
    element.send_keys(text)


def test_a_reviewer_rejects_one_record_and_edits_another_in_the_prefect_ui(
        prefect_server: str, browser: WebDriver, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "AUGMENT_CACHE_DIR": str(tmp_path / "cache"), "PREFECT_LOGGING_LEVEL": "INFO"}  # logs in the UI
    command = [sys.executable, "-m", "augment_it.cli.main", "run", str(COMPANIES), "--template",
               str(TEMPLATE), "--provider", "none", "--review", "ui", "--id-column", "company_id",
               "--out", str(out)]
    log = tmp_path / "augment-run.log"
    with log.open("w") as sink:
        pipeline = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        run = paused_review_run(prefect_server)
        ui = prefect_server.removesuffix("/api")
        browser.get(f"{ui}/runs/flow-run/{run['id']}")
        wait = WebDriverWait(browser, 60)
        resume = wait.until(expected_conditions.element_to_be_clickable(
            (By.XPATH, "//button[normalize-space(.)='Resume']")))
        resume.click()
        wait.until(expected_conditions.visibility_of_element_located(
            (By.XPATH, "//*[contains(@class,'p-modal')]//h2[contains(., 'Review the augmented records')]")))

        rejects = add_item(browser, "Reject Ids")
        type_into(rejects.find_elements(By.CSS_SELECTOR, "input, textarea")[-1], "c005")
        edits = add_item(browser, "Edits")
        for label, text in (("Id", "c003"), ("Field", "summary"), ("Value", NEW_SUMMARY)):
            nested = [p for p in edits.find_elements(By.CSS_SELECTOR, ".schema-form-property")
                      if p.find_element(By.CSS_SELECTOR, ".schema-form-property__label").text.split(" (")[0]
                      == label]
            assert nested, f"the edit item has no {label} field"
            type_into(nested[0].find_element(By.CSS_SELECTOR, "input, textarea"), text)
        reviewer = form_property(browser, "Reviewer").find_element(By.CSS_SELECTOR, "textarea, input")
        type_into(reviewer, "Grace")
        type_into(form_property(browser, "Comment").find_element(By.CSS_SELECTOR, "textarea, input"),
                  "c005 is too vague; fixed the c003 summary")
        browser.save_screenshot(str(ARTIFACTS / "review-form.png"))
        browser.find_element(By.XPATH, "//*[contains(@class,'p-modal')]//button[normalize-space(.)='Submit']"
                             ).click()
        assert pipeline.wait(180) == 0, log.read_text()[-3000:]
    finally:
        if pipeline.poll() is None:
            pipeline.kill()  # the pipeline subprocess started above

    ids = {name: pd.read_parquet(out / f"{name}.parquet") for name in ("exported", "rejected")}
    assert list(ids["rejected"]["_id"]) == ["c005"]
    exported = ids["exported"].set_index("_id")
    assert sorted(exported.index) == ["c001", "c002", "c003", "c004", "c008"]
    assert exported.loc["c003", "summary"] == NEW_SUMMARY
    assert exported["summary"].drop("c003").isna().all()  # no other record changed
    assert set(exported["reviewed_by"]) == {"Grace"} and set(exported["review_status"]) == {"approved"}
    log = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["field"], r["before"], r["after"]) for r in log if r["action"] == "edit"] == [
        ("c003", "summary", None, NEW_SUMMARY)]
    assert json.loads((out / "summary.json").read_text())["review"]["comment"].startswith("c005 is too vague")

    ui = prefect_server.removesuffix("/api")
    browser.get(f"{ui}/runs/flow-run/{run['id']}")
    WebDriverWait(browser, 60).until(expected_conditions.visibility_of_element_located(
        (By.XPATH, "//*[contains(@class,'state-badge') and contains(., 'Completed')]")))
    time.sleep(3)  # the task graph is a canvas: give it a moment to draw
    browser.save_screenshot(str(ARTIFACTS / "review-run-completed.png"))

    query = {"artifacts": {"key": {"any_": ["export-summary"]}}, "sort": "CREATED_DESC", "limit": 1}
    artifact = httpx.post(f"{prefect_server}/artifacts/filter", json=query, timeout=10).json()[0]
    browser.get(f"{ui}/artifacts/artifact/{artifact['id']}")
    WebDriverWait(browser, 60).until(expected_conditions.visibility_of_element_located(
        (By.XPATH, "//*[contains(., 'Review:') and contains(., 'c005 is too vague')]")))
    WebDriverWait(browser, 10).until(expected_conditions.visibility_of_element_located(  # and why
        (By.XPATH, "//li[contains(., \"field 'employees' = 'many' is not a valid integer\")]")))
    browser.save_screenshot(str(ARTIFACTS / "export-summary.png"))
