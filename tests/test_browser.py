"""The home page in a real browser (Debian's Chromium), in Polish and in English."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pwdrst import sandbox

pytestmark = pytest.mark.browser
STAFF = sandbox.SAMPLE_PEOPLE[3]


def test_home_page_in_polish_then_english(live_server, browser, screenshot):
    browser.get(live_server.url + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "pl"
    assert "Zapomniałem hasła" in browser.page_source
    screenshot(browser, "home-pl")
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "English"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "I forgot my password" in browser.page_source
    screenshot(browser, "home-en")
    # The choice sticks on the next visit.
    browser.get(live_server.url + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"


def click_and_wait(browser, element, timeout=10):
    """Click something that loads a new page, and wait until it has."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    element.click()

    def old_page_gone(_):
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            # Chromium 156 asked about a node of a page it is leaving answers this "unknown error"
            # instead of a stale element: the same news, so it ends the wait too.
            if "does not belong to the document" in (exc.msg or ""):
                return True
            raise
        return False

    WebDriverWait(browser, timeout).until(old_page_gone)


def wait_for(browser, condition, timeout=10):
    """Wait until a condition on the page holds."""
    return WebDriverWait(browser, timeout).until(condition)


def test_forgot_password_from_request_to_success(
    live_server, browser, screenshot, smtp, can_bind, make_person, new_password
):
    person = make_person()
    browser.get(live_server.url + "/")
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Ustaw nowe hasło"))
    browser.find_element(By.ID, "identifier").send_keys(person.mail[0])
    screenshot(browser, "1-request")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert "Sprawdź skrzynkę" in browser.page_source
    screenshot(browser, "2-requested")

    link = smtp.link(smtp.wait_for(1)[0])
    assert link.startswith(live_server.url + "/reset/")
    browser.get(link)
    assert browser.current_url == live_server.url + "/reset/new"  # the token left the address bar

    field = browser.find_element(By.ID, "new_password")
    meter = browser.find_element(By.ID, "new_password-meter")
    field.send_keys("kowalski2024")
    wait_for(browser, lambda b: meter.is_displayed() and meter.get_attribute("data-ok") == "false")
    # The meter's problems are the field's error list, above the input: one verdict in one place.
    errors = browser.find_element(By.ID, "new_password-errors")
    assert "Użyj co najmniej 15 znaków" in errors.text
    assert field.get_attribute("aria-invalid") == "true"
    screenshot(browser, "3-weak-password-meter")

    field.clear()
    field.send_keys(new_password)
    wait_for(browser, lambda b: meter.get_attribute("data-ok") == "true")
    assert errors.text == "" and field.get_attribute("aria-invalid") == "false"
    assert meter.get_attribute("data-score") in ("3", "4")
    browser.find_element(By.ID, "confirm").send_keys(new_password)
    screenshot(browser, "4-strong-password-meter")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert "Hasło zmienione" in browser.page_source
    screenshot(browser, "5-done")
    assert can_bind(person.dn, new_password)


def test_show_password_toggle(live_server, browser, smtp, make_person):
    person = make_person()
    browser.get(live_server.url + "/reset")
    browser.find_element(By.ID, "identifier").send_keys(person.uid)
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    browser.get(smtp.link(smtp.wait_for(1)[0]))
    field = browser.find_element(By.ID, "new_password")
    toggle = browser.find_element(By.CSS_SELECTOR, "button[data-show=new_password]")
    assert field.get_attribute("type") == "password"
    toggle.click()
    assert field.get_attribute("type") == "text"
    assert toggle.get_attribute("aria-pressed") == "true"
    toggle.click()
    assert field.get_attribute("type") == "password"


CAPS_EVENT = """
arguments[0].dispatchEvent(new KeyboardEvent(arguments[1], {key: "A", bubbles: true, modifierCapsLock: arguments[2]}));
"""


def test_login_caps_lock_change_and_logout(live_server, browser, screenshot, can_bind, make_person, new_password):
    person = make_person()
    browser.get(live_server.url + "/")
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Zaloguj się"))
    browser.find_element(By.ID, "identifier").send_keys(person.mail[0])
    field = browser.find_element(By.ID, "password")
    warning = browser.find_element(By.ID, "password-caps")
    field.send_keys("abc")  # real key events, Caps Lock off
    assert not warning.is_displayed()
    browser.execute_script(CAPS_EVENT, field, "keydown", True)
    assert warning.is_displayed()
    assert "Caps Lock" in warning.text
    screenshot(browser, "1-caps-lock-on")
    browser.execute_script(CAPS_EVENT, field, "keyup", False)
    assert not warning.is_displayed()

    field.clear()
    field.send_keys("wrong-password")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]"))
    assert "Niepoprawne dane logowania" in browser.page_source
    screenshot(browser, "2-invalid")

    browser.find_element(By.ID, "identifier").clear()
    browser.find_element(By.ID, "identifier").send_keys(person.uid)
    browser.find_element(By.ID, "password").send_keys(person.password)
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]"))
    assert browser.current_url == live_server.url + "/password"
    browser.find_element(By.ID, "current_password").send_keys(person.password)
    browser.find_element(By.ID, "new_password").send_keys(new_password)
    browser.find_element(By.ID, "confirm").send_keys(new_password)
    screenshot(browser, "3-change-form")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]"))
    assert "Hasło zostało zmienione" in browser.page_source
    screenshot(browser, "4-changed")
    assert can_bind(person.dn, new_password)

    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "nav.account button[type=submit]"))
    assert "Wylogowano." in browser.page_source
    screenshot(browser, "5-logged-out")
    browser.get(live_server.url + "/password")
    assert "/login" in browser.current_url


def test_helpdesk_issues_a_shown_once_link_used_in_another_browser(
    live_server, browser, make_browser, screenshot, can_bind, make_person, new_password
):
    person = make_person(given="Zofia", surname="Przykładna")
    browser.get(live_server.url + "/login")
    browser.find_element(By.ID, "identifier").send_keys(STAFF.uid)
    browser.find_element(By.ID, "password").send_keys(STAFF.password)
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]"))
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Pomoc IT"))
    browser.find_element(By.ID, "q").send_keys("Przykładna")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]"))
    screenshot(browser, "1-search")
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, person.uid))
    browser.find_element(By.CSS_SELECTOR, "input[name=delivery][value=shown]").click()
    browser.find_element(By.ID, "identity_checked").click()
    screenshot(browser, "2-account")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]"))
    link = browser.find_element(By.ID, "shown-link").text
    assert link.startswith(live_server.url + "/reset/")
    qr = browser.find_element(By.CSS_SELECTOR, "img[alt]")
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", qr) > 0
    screenshot(browser, "3-shown-once")
    browser.refresh()
    assert "/reset/" not in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "4-reloaded")

    other = make_browser()
    other.get(link)
    assert other.current_url == live_server.url + "/reset/new"
    other.find_element(By.ID, "new_password").send_keys(new_password)
    other.find_element(By.ID, "confirm").send_keys(new_password)
    click_and_wait(other, other.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert "Hasło zmienione" in other.page_source
    screenshot(other, "5-reset-in-second-browser")
    assert can_bind(person.dn, new_password)
