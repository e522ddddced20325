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
