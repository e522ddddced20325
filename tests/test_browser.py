"""The home page in a real browser (Debian's Chromium), in Polish and in English."""

import pytest
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.browser


def test_home_page_in_polish_then_english(live_server, browser, screenshot):
    browser.get(live_server.url + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "pl"
    assert "Zapomniałem hasła" in browser.page_source
    screenshot(browser, "home-pl")
    browser.find_element(By.LINK_TEXT, "English").click()
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "I forgot my password" in browser.page_source
    screenshot(browser, "home-en")
    # The choice sticks on the next visit.
    browser.get(live_server.url + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"


def wait_for(browser, condition, timeout=10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(condition)


def test_forgot_password_from_request_to_success(live_server, browser, screenshot, smtp, slapd, make_person):
    from tests.conftest import mail_link
    from tests.test_reset import NEW_PASSWORD, can_bind

    person = make_person()
    browser.get(live_server.url + "/")
    browser.find_element(By.LINK_TEXT, "Ustaw nowe hasło").click()
    browser.find_element(By.ID, "identifier").send_keys(person.mail[0])
    screenshot(browser, "1-request")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "Sprawdź skrzynkę" in browser.page_source
    screenshot(browser, "2-requested")

    link = mail_link(smtp.wait_for(1)[0])
    assert link.startswith(live_server.url + "/reset/")
    browser.get(link)
    assert browser.current_url == live_server.url + "/reset/new"  # the token left the address bar

    field = browser.find_element(By.ID, "new_password")
    meter = browser.find_element(By.ID, "new_password-meter")
    field.send_keys("kowalski2024")
    wait_for(browser, lambda b: meter.is_displayed() and meter.get_attribute("data-ok") == "false")
    assert "Użyj co najmniej 15 znaków" in meter.text
    screenshot(browser, "3-weak-password-meter")

    field.clear()
    field.send_keys(NEW_PASSWORD)
    wait_for(browser, lambda b: meter.get_attribute("data-ok") == "true")
    assert meter.get_attribute("data-score") in ("3", "4")
    browser.find_element(By.ID, "confirm").send_keys(NEW_PASSWORD)
    screenshot(browser, "4-strong-password-meter")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "Hasło zmienione" in browser.page_source
    screenshot(browser, "5-done")
    assert can_bind(slapd, person.dn, NEW_PASSWORD)


def test_show_password_toggle(live_server, browser, smtp, make_person):
    from tests.conftest import mail_link

    person = make_person()
    browser.get(live_server.url + "/reset")
    browser.find_element(By.ID, "identifier").send_keys(person.uid)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    browser.get(mail_link(smtp.wait_for(1)[0]))
    field = browser.find_element(By.ID, "new_password")
    toggle = browser.find_element(By.CSS_SELECTOR, "button[data-show=new_password]")
    assert field.get_attribute("type") == "password"
    toggle.click()
    assert field.get_attribute("type") == "text"
    assert toggle.get_attribute("aria-pressed") == "true"
    toggle.click()
    assert field.get_attribute("type") == "password"
