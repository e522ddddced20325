"""The home page, the language switch and the health check."""


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


def test_language_switch_never_redirects_off_site(client):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = client.get("/lang/pl", query_string={"next": target})
        assert response.headers["Location"] == "/"


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
    assert response.get_json()["directory"] == "unavailable"
