"""The theme an organisation sets, not edits: colour, logo, favicon, footer links, its own templates."""

import pytest

from pwdrst import create_app, demo
from pwdrst.config import ConfigError, contrast_with_white


@pytest.mark.parametrize(
    "value, words",
    [
        ("#f0b400", "contrast of 1.87:1"),  # the old yellow
        ("#777777", "contrast of 4.48:1"),
        ("blue", "#rrggbb"),
        ("#12345", "#rrggbb"),
    ],
)
def test_a_colour_white_text_cannot_be_read_on_stops_start_up_naming_the_setting(settings, value, words):
    with pytest.raises(ConfigError, match="ORGANISATION_COLOUR") as refused:
        create_app(settings(ORGANISATION_COLOUR=value))
    assert words in str(refused.value)


def test_contrast_is_computed_as_wcag_does():
    assert round(contrast_with_white("#000000"), 1) == 21.0
    assert round(contrast_with_white("#767676"), 2) == 4.54


@pytest.mark.parametrize(
    "key, value",
    [
        ("ORGANISATION_LOGO_FILE", "/nonexistent/logo.svg"),
        ("ORGANISATION_FAVICON_FILE", __file__),  # readable, but not an image
        ("ORGANISATION_FOOTER_LINKS", [["Privacy"]]),
        ("ORGANISATION_FOOTER_LINKS", [["Privacy", "javascript:alert(1)"]]),
        ("ORGANISATION_FOOTER_LINKS", [[{"de": "Datenschutz"}, "https://uni.example/privacy"]]),
        ("ORGANISATION_FOOTER_LINKS", [[{"en": ""}, "https://uni.example/privacy"]]),
        ("ORGANISATION_FOOTER_LINKS", [[{}, "https://uni.example/privacy"]]),
        ("THEME_FOLDER", "/nonexistent/theme"),
    ],
)
def test_unusable_theme_settings_stop_start_up_naming_them(settings, key, value):
    with pytest.raises(ConfigError, match=key):
        create_app(settings(**{key: value}))


def test_the_sample_theme_shows_its_logo_colour_favicon_and_footer_links(make_app):
    client = make_app(**demo.SAMPLE_THEME).test_client()
    page = client.get("/").get_data(as_text=True)
    assert '<img src="/theme/logo" alt="" height="40">' in page
    assert '<link rel="icon" href="/theme/favicon">' in page
    assert '<a href="https://uni.example/dostepnosc">Deklaracja dostępności</a>' in page
    css = client.get("/theme/theme.css")
    assert css.mimetype == "text/css" and "--brand: #7b1e3c;" in css.get_data(as_text=True)
    logo = client.get("/theme/logo")
    assert logo.status_code == 200 and logo.mimetype == "image/svg+xml" and b"<svg" in logo.get_data()
    logo.close()
    assert make_app().test_client().get("/theme/logo").status_code == 404


@pytest.mark.parametrize(("language", "label"), [("pl", "Deklaracja dostępności"), ("en", "Accessibility statement")])
def test_footer_labels_follow_the_page_language(make_app, language, label):
    client = make_app(**demo.SAMPLE_THEME).test_client()
    client.get(f"/lang/{language}")
    page = client.get("/").get_data(as_text=True)
    assert f'<a href="https://uni.example/dostepnosc">{label}</a>' in page


def test_a_footer_label_in_one_language_is_shown_in_every_language(make_app):
    links = [[{"pl": "Tylko po polsku"}, "https://uni.example/pl"], ["Plain text", "https://uni.example/plain"]]
    client = make_app(ORGANISATION_FOOTER_LINKS=links).test_client()
    client.get("/lang/en")
    page = client.get("/").get_data(as_text=True)
    assert ">Tylko po polsku</a>" in page and ">Plain text</a>" in page


def test_a_template_in_the_theme_folder_overrides_the_built_in_one_by_name(make_app, tmp_path):
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "index.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Our own home page</h1>{% endblock %}', encoding="utf-8"
    )
    client = make_app(THEME_FOLDER=str(tmp_path)).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "<h1>Our own home page</h1>" in page
    assert 'class="skip"' in page  # the built-in frame around it
    assert client.get("/reset").status_code == 200  # the others stay built-in
