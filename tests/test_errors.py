"""Friendly error pages: every refusal is a page in the person's language, never a traceback."""


def test_unknown_page_is_a_friendly_404(pure_app):
    response = pure_app.test_client().get("/no-such-page")
    assert response.status_code == 404
    assert "Nie ma takiej strony" in response.get_data(as_text=True)


def test_a_form_without_its_csrf_token_says_it_expired(pure_app):
    response = pure_app.test_client().post("/reset", data={"identifier": "jkowalski"})
    assert response.status_code == 400
    assert "Formularz wygasł albo nie został wysłany z tej strony" in response.get_data(as_text=True)


def test_errors_under_the_api_are_json_sentences(pure_app):
    response = pure_app.test_client().get("/api/no-such-endpoint")
    assert response.status_code == 404
    assert response.get_json()["message"]


def test_an_unexpected_error_is_logged_once_and_shown_as_a_friendly_page(pure_app, caplog):
    @pure_app.get("/boom")
    def boom():
        raise RuntimeError("a fault in the code")

    response = pure_app.test_client().get("/boom")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Wystąpił nieoczekiwany błąd" in page and "a fault in the code" not in page
    [record] = [r for r in caplog.records if r.name == "pwdrst.errors"]
    assert "unexpected error on GET /boom" in record.getMessage() and record.exc_info
