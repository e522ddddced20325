"""Friendly error pages: every refusal is a page in the person's language, never a traceback."""


def test_unknown_page_is_a_friendly_404(pure_app):
    response = pure_app.test_client().get("/no-such-page")
    assert response.status_code == 404
    assert "Nie ma takiej strony" in response.get_data(as_text=True)
