"""The home page, the language switch and the health check."""

import pytest


def test_home_page_shows_the_organisation_and_the_helpdesk(client):
    page = client.get("/").get_data(as_text=True)
    assert "Uniwersytet Przykładowy" in page
    assert "pomoc@uni.example" in page


def test_home_page_is_polish_by_default(client):
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="pl">' in page
    assert "Zapomniałem hasła" in page


def test_home_page_follows_accept_language(client):
    page = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)
    assert '<html lang="en">' in page
    assert "I forgot my password" in page


def test_language_switch_is_remembered_in_a_cookie(client):
    response = client.get("/lang/en?next=/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/", headers={"Accept-Language": "pl"}).get_data(as_text=True)
    assert '<html lang="en">' in page


# Spellings of "somewhere else" an attacker tries in a `next` parameter; each must end on this site.
OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example",
    "/\\evil",
    "\\\\evil",
    "/%5Cevil",
    "/%5C%5Cevil",
    "/%2F%2Fevil",
    "/%2f/evil",
    "/%252F%252Fevil",
    "/%25252F%25252Fevil",
    "https:evil",
    "javascript:alert(1)",
    " //evil",
    "\t//evil",
    "/\t/evil.example",
    "/%09/evil.example",
    "/%0A/x",
    "/%0D%0ALocation:%20https://evil.example",
    "/\n/x",
    "/\x00/evil",
    "/%00/evil",
    "/\x7f/evil",
    "/\u2215\u2215evil",
    "/\uff0f\uff0fevil",
    "/%EF%BC%8F%EF%BC%8Fevil",
    "/%E2%80%AE/evil",
    "/../evil",
    "/%2e%2e/%2e%2e/evil",
    "evil.example",
    "",
    "/" + "a" * 5000,
    "/x?" + "%2F" * 2000,
]


def assert_on_this_site(location: str) -> None:
    """Fail unless a Location header is a path on this site, as a browser would read it."""
    from urllib.parse import urljoin, urlsplit

    assert location.startswith("/") and not location.startswith("//"), location
    assert location.isascii() and location.isprintable() and " " not in location and "\\" not in location
    resolved = urlsplit(urljoin("https://pwdrst.uni.example/pwdrst/lang/en", location))
    assert (resolved.scheme, resolved.netloc) == ("https", "pwdrst.uni.example"), location


@pytest.mark.parametrize("target", OFF_SITE)
def test_language_switch_never_redirects_off_site(client, target):
    response = client.get("/lang/pl", query_string={"next": target})
    assert response.status_code == 302
    assert_on_this_site(response.headers["Location"])
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("query", ["next=/%09/evil.example", "next=/%0A/x", "next=%2F%2Fevil", "next=/%5C/evil"])
def test_language_switch_with_a_raw_encoded_next_goes_home(client, query):
    response = client.get("/lang/en?" + query)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/reset", "/helpdesk/?q=Brz%C4%99czyszczykiewicz", "/reset?x=a:b", "/password"])
def test_language_switch_returns_to_a_page_of_this_site(client, target):
    response = client.get("/lang/en", query_string={"next": target})
    assert response.headers["Location"] == target


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_site(app, make_person, auth, target):
    person = make_person()
    response = auth.on(app.test_client()).login(person.uid, person.password, query_string={"next": target})
    assert response.status_code == 303
    assert_on_this_site(response.headers["Location"])
    assert response.headers["Location"] == "/password"


def test_login_returns_to_the_page_it_was_asked_for(client, make_person, auth):
    person = make_person()
    assert client.get("/recovery").headers["Location"] == "/login?next=/recovery"
    response = auth.login(person.uid, person.password, query_string={"next": "/recovery"})
    assert response.headers["Location"] == "/recovery"


def test_every_page_links_to_the_other_language(client):
    page = client.get("/").get_data(as_text=True)
    assert 'href="/lang/en?next=/"' in page


def test_healthz_says_ok_when_the_directory_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"directory": "ok"}


def test_healthz_says_503_when_the_directory_is_unreachable(pure_app):
    response = pure_app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"directory": "unavailable"}


def test_healthz_tells_the_reason_to_the_log_only(make_app, caplog):
    app = make_app(LDAP_BIND_PASSWORD="not-the-service-password")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"directory": "unavailable"}
    assert "cannot bind" in caplog.text and "cannot bind" not in response.get_data(as_text=True)
    assert "not-the-service-password" not in caplog.text
