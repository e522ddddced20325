"""Issue 15's proof in Debian's Chromium: every page state at a phone's and a desktop's size.

For each state: no horizontal overflow, axe-core (installed by scripts/setup.sh into node_modules/)
reports no violation, and a screenshot goes to tests/artifacts/screens/ for people to look at. After
a refused submit the error summary has the focus. One browser walks all the states.
"""

import os
import pathlib

import pytest
from selenium.webdriver.common.by import By

from pwdrst import demo, sandbox
from tests.test_browser import click_and_wait, wait_for

pytestmark = pytest.mark.browser
STAFF = sandbox.SAMPLE_PEOPLE[3]
ROOT = pathlib.Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = ROOT / "tests" / "artifacts" / "screens"
SIZES = {"phone": (390, 844), "desktop": (1280, 900)}
# Widths checked for overflow only (no axe, no screenshot): the narrowest phone to a wide desktop.
WIDTHS = (320, 360, 600, 768, 1024, 1440)

RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document).then(
  (result) => done(result.violations.map((v) => v.id + ": " + v.nodes.map((n) => n.target.join(" ")).join(", "))),
  (error) => done(["axe failed: " + error]));
"""


@pytest.fixture
def config_overrides():
    return {**demo.SAMPLE_THEME, "ORGANISATION_NAME": "Uniwersytet Przykładowy"}


@pytest.fixture
def look(browser):
    """Return look(name): check the page at both sizes and keep its screenshots; the failures collected."""
    assert AXE.exists(), "axe-core is missing: run scripts/setup.sh"
    axe_source = AXE.read_text(encoding="utf-8")
    SCREENS.mkdir(parents=True, exist_ok=True)
    problems = []

    def check(name):
        for size, (width, height) in SIZES.items():
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"},
            )
            scroll, inner = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            if scroll > inner:
                problems.append(f"{name} at {size}: {scroll} px wide in a {inner} px window")
            if not browser.execute_script("return typeof axe !== 'undefined'"):
                browser.execute_script(axe_source)
            problems.extend(f"{name} at {size}: {v}" for v in browser.execute_async_script(RUN_AXE))
            browser.save_screenshot(str(SCREENS / f"{name}-{size}.png"))
        for width in WIDTHS:
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600},
            )
            scroll, inner = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            if scroll > inner:
                problems.append(f"{name} at {width} px: {scroll} px wide in a {inner} px window")
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    check.problems = problems
    return check


def summary_has_focus(browser):
    return browser.execute_script(
        "return document.activeElement && document.activeElement.matches('.error-summary[role=alert]')"
    )


def submit(browser):
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]"))


def test_every_page_state_fits_a_phone_and_a_desktop_without_an_axe_violation(
    live_server,
    browser,
    look,
    smtp,
    slapd,
    make_person,
):
    browser.set_script_timeout(30)
    url = live_server.url
    person, expired = make_person(), make_person()
    policy = slapd.add_policy("look-expired", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    slapd.expire_password(expired.dn, policy)

    browser.get(url + "/")
    look("home")
    browser.get(url + "/reset")
    look("request")
    browser.find_element(By.ID, "identifier").send_keys(person.uid)
    submit(browser)
    look("requested")

    link = smtp.link(smtp.wait_for(1)[0])
    browser.get(link)
    browser.find_element(By.ID, "new_password").send_keys("krótkie")
    browser.find_element(By.ID, "confirm").send_keys("inne")
    submit(browser)
    assert summary_has_focus(browser)
    assert browser.find_elements(By.CSS_SELECTOR, ".error-summary a[href='#new_password']")
    look("new-password-error")

    # The suggestion: five words of the Polish list, scored by the meter, which replaces the stale errors.
    field = browser.find_element(By.ID, "new_password")
    browser.find_element(By.CSS_SELECTOR, "button[data-suggest=new_password]").click()
    meter = browser.find_element(By.ID, "new_password-meter")
    wait_for(browser, lambda b: meter.get_attribute("data-ok") == "true")
    words = field.get_attribute("value").split("-")
    polish = set((ROOT / "static" / "words" / "pl.txt").read_text(encoding="utf-8").split())
    assert len(words) == 5 and set(words) <= polish
    assert browser.find_element(By.ID, "new_password-errors").text == ""
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-server-suggestion]:not([hidden])")
    browser.find_element(By.ID, "confirm").clear()
    chosen = field.get_attribute("value")
    browser.find_element(By.ID, "confirm").send_keys(chosen)
    submit(browser)
    look("done")
    browser.get(link)
    look("refused-link")

    browser.get(url + "/login")
    browser.find_element(By.ID, "identifier").send_keys(person.uid)
    browser.find_element(By.ID, "password").send_keys("wrong-password")
    submit(browser)
    assert summary_has_focus(browser)
    look("login-error")
    # The focus ring: at least 3:1 against the white card (the old yellow one had 1.87:1).
    browser.find_element(By.ID, "identifier").click()
    colour = browser.execute_script("return getComputedStyle(document.activeElement).outlineColor")
    assert colour in ("rgb(26, 26, 26)",), colour

    browser.find_element(By.ID, "identifier").clear()
    browser.find_element(By.ID, "identifier").send_keys(person.uid)
    browser.find_element(By.ID, "password").send_keys(chosen)
    submit(browser)
    browser.find_element(By.ID, "new_password").send_keys("krótkie")
    submit(browser)
    assert summary_has_focus(browser)
    look("change-error")
    browser.get(url + "/recovery")
    look("recovery")
    browser.delete_all_cookies()

    browser.get(url + "/login")
    browser.find_element(By.ID, "identifier").send_keys(expired.uid)
    browser.find_element(By.ID, "password").send_keys(expired.password)
    submit(browser)
    assert browser.current_url == url + "/password"
    look("expired")
    browser.delete_all_cookies()

    browser.get(url + "/login")
    browser.find_element(By.ID, "identifier").send_keys(STAFF.uid)
    browser.find_element(By.ID, "password").send_keys(STAFF.password)
    submit(browser)
    assert browser.current_url == url + "/helpdesk/"  # staff land on the helpdesk
    browser.find_element(By.ID, "q").send_keys("testowa")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]"))
    look("helpdesk-results")
    browser.get(f"{url}/helpdesk/account/{person.uid}")
    look("helpdesk-account")
    browser.find_element(By.CSS_SELECTOR, "input[name=delivery][value=shown]").click()
    browser.find_element(By.ID, "identity_checked").click()
    submit(browser)
    assert browser.find_element(By.ID, "shown-link").text.startswith(url + "/reset/")
    look("shown-link")

    assert look.problems == [], "\n".join(look.problems)
    assert len(os.listdir(SCREENS)) >= 26
