"""The strength endpoint behind the meter: same verdict as the policy, CSRF, limits, sizes."""

import pytest

from pwdrst.policy import check_password


@pytest.fixture
def meter(client, csrf_token):
    """Return meter(body, **headers): POST to the meter with the page's CSRF token, as the script does."""
    token = csrf_token(client.get("/reset"))

    def post(body, **headers):
        kwargs = {"json": body} if not isinstance(body, (bytes, str)) else {"data": body}
        return client.post("/api/strength", headers={"X-CSRFToken": token, **headers}, **kwargs)

    return post


def test_meter_answers_the_policy_verdict(meter, app):
    response = meter({"password": "krótkie"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is False
    assert body["score"] in range(5)
    assert {"too_short", "weak"} <= {p["code"] for p in body["problems"]}
    assert "Użyj co najmniej 15 znaków (to hasło ma ich 7)." in [p["message"] for p in body["problems"]]
    with app.test_request_context():
        assert [p["code"] for p in body["problems"]] == list(check_password("krótkie").codes)


def test_meter_speaks_the_page_language(client, csrf_token):
    client.get("/lang/en")
    token = csrf_token(client.get("/reset"))
    body = client.post("/api/strength", json={"password": "abc"}, headers={"X-CSRFToken": token}).get_json()
    assert "Use at least 15 characters (this one has 3)." in [p["message"] for p in body["problems"]]


def test_meter_accepts_a_strong_password(meter):
    body = meter({"password": "Zielony-parasol-nad-Wisłą-7"}).get_json()
    assert body == {"ok": True, "score": 4, "problems": [], "warning": "", "suggestions": []}


def test_meter_judges_for_the_account_of_the_reset_link(client, make_person, reset_flow, csrf_token):
    person = make_person(given="Jan", surname="Kowalski")
    reset_flow.open(reset_flow.link(person.uid))
    token = csrf_token(client.get("/reset/new"))
    body = client.post("/api/strength", json={"password": "JanKowalski2025!"}, headers={"X-CSRFToken": token})
    assert "personal" in [p["code"] for p in body.get_json()["problems"]]


def test_meter_requires_the_csrf_header(client):
    client.get("/reset")
    response = client.post("/api/strength", json={"password": "whatever"})
    assert response.status_code == 400


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"password": 5}', b"{}", b"\xff\xfe"])
def test_meter_refuses_bad_bodies_with_a_sentence(meter, body):
    response = meter(body, **{"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["message"]


@pytest.mark.parametrize("length", [129, 100_000])
def test_meter_refuses_over_long_passwords_by_length(meter, length):
    response = meter({"password": "x" * length})
    assert response.status_code == 200
    body = response.get_json()
    assert [p["code"] for p in body["problems"]] == ["too_long"]


def test_meter_body_over_the_size_limit_is_a_413_sentence(meter):
    response = meter({"password": "x" * 300_000})
    assert response.status_code == 413
    assert response.get_json()["message"]


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_STRENGTH": "3 per minute"}])
def test_meter_is_rate_limited_per_client(meter, config_overrides):
    statuses = [meter({"password": "abc"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_meter_refuses_get(client):
    assert client.get("/api/strength").status_code == 405


@pytest.fixture
def scored(monkeypatch):
    """Count zxcvbn's scorings (pwdrst.matcher.score) as they happen."""
    from pwdrst import matcher

    calls = []
    real = matcher.score

    def counting(password, user_inputs):
        calls.append(1)
        return real(password, user_inputs)

    monkeypatch.setattr(matcher, "score", counting)
    return calls


def test_reset_form_reuses_the_meter_score_for_the_same_password(client, reset_flow, make_person, csrf_token, scored):
    person = make_person()
    password = "Zielony-parasol-nad-Wisłą-7"
    reset_flow.open(reset_flow.link(person.uid))
    token = csrf_token(client.get("/reset/new"))
    assert client.post("/api/strength", json={"password": password}, headers={"X-CSRFToken": token}).status_code == 200
    assert len(scored) == 1
    response = client.post("/reset/new", data={"csrf_token": token, "new_password": password, "confirm": password})
    assert response.status_code == 303
    assert len(scored) == 1  # the POST took the meter's score


def test_change_form_scores_a_password_the_meter_did_not_see(client, auth, make_person, csrf_token, scored):
    person = make_person()
    auth.login(person.uid, person.password)
    token = csrf_token(client.get("/password"))
    client.post("/api/strength", json={"password": "Zielony-parasol-nad-Wisłą-7"}, headers={"X-CSRFToken": token})
    other = "Niebieski-kubek-przy-oknie-8"
    form = {"csrf_token": token, "current_password": person.password, "new_password": other, "confirm": other}
    assert client.post("/password", data=form).status_code == 303
    assert len(scored) == 2  # a different password: scored afresh


def test_a_score_kept_for_one_account_is_not_used_for_another(app, make_person, scored):
    from flask import session

    from pwdrst.directory import directory
    from pwdrst.policy import SCORE_KEY, check_password

    first, second = make_person(), make_person()
    password = "Zielony-parasol-nad-Wisłą-7"
    with app.test_request_context():
        one, two = directory.get_account(first.uid), directory.get_account(second.uid)
        check_password(password, one, reuse=False, remember=True)
        kept = dict(session[SCORE_KEY])
        check_password(password, one)
        assert len(scored) == 1
        check_password(password, two)
        assert len(scored) == 2
        assert password not in repr(kept) and set(kept) == {"digest", "score"}


def test_the_kept_score_never_reaches_the_cookie(client, auth, make_person, csrf_token):
    person = make_person()
    auth.login(person.uid, person.password)
    token = csrf_token(client.get("/password"))
    response = client.post(
        "/api/strength", json={"password": "Zielony-parasol-nad-Wisłą-7"}, headers={"X-CSRFToken": token}
    )
    cookies = " ".join(response.headers.getlist("Set-Cookie")) + client.get_cookie("pwdrst_session").value
    assert "score" not in cookies and "Zielony" not in cookies and "strength" not in cookies
    sid = client.get_cookie("pwdrst_session").value
    assert len(sid) == 43  # only the random session id
