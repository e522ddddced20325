"""The helpdesk: who may use it, search, account page, and the three ways to issue a link."""

import pytest

from pwdrst import sandbox

STAFF = sandbox.SAMPLE_PEOPLE[3]  # mzielinska, helpdesk group
ADMIN = sandbox.SAMPLE_PEOPLE[4]  # kwojcik, admin and protected groups


@pytest.fixture
def staff(client, auth):
    """The test client, logged in as a helpdesk member."""
    assert auth.login(STAFF.uid, STAFF.password).status_code == 303
    return client


@pytest.fixture
def admin(app, auth):
    """Another client, logged in as a member of the admin group."""
    client = app.test_client()
    assert auth.on(client).login(ADMIN.uid, ADMIN.password).status_code == 303
    return client


@pytest.fixture
def issue(submit):
    """Return issue(client, login, **form): submit the helpdesk's link form for an account."""

    def post(client, login, **data):
        return submit(client, f"/helpdesk/account/{login}/link", data, form_url=f"/helpdesk/account/{login}")

    return post


# -- who


def test_staff_see_the_helpdesk_entry(staff):
    page = staff.get("/password").get_data(as_text=True)
    assert 'href="/helpdesk/"' in page


def test_non_member_gets_403_at_the_helpdesk_and_every_post(client, make_person, auth, audit, csrf_token):
    person = make_person()
    auth.login(person.uid, person.password)
    assert 'href="/helpdesk/"' not in client.get("/password").get_data(as_text=True)
    page = client.get("/helpdesk/")
    assert page.status_code == 403
    assert "Brak dostępu" in page.get_data(as_text=True)
    assert client.get("/helpdesk/account/jkowalski").status_code == 403
    token = csrf_token(client.get("/password"))
    posted = client.post("/helpdesk/account/jkowalski/link", data={"csrf_token": token, "delivery": "recovery"})
    assert posted.status_code == 403
    assert [e["outcome"] for e in audit("helpdesk_refused")] == ["not_staff"] * 3


def test_anonymous_visitor_is_sent_to_login_and_posts_are_refused(client):
    response = client.get("/helpdesk/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert client.post("/helpdesk/account/jkowalski/link").status_code in (400, 403)


def test_admin_group_members_have_helpdesk_rights(admin):
    assert admin.get("/helpdesk/").status_code == 200


# -- search and account page


def test_staff_find_a_person_by_an_alias_and_by_part_of_the_name(staff, make_person):
    person = make_person(given="Grzegorz", surname="Brzęczyszczykiewicz")
    by_alias = staff.get("/helpdesk/", query_string={"q": person.mail[2]}).get_data(as_text=True)
    assert f'href="/helpdesk/account/{person.uid}"' in by_alias
    by_name = staff.get("/helpdesk/", query_string={"q": "zęczyszczyk"}).get_data(as_text=True)
    assert f'href="/helpdesk/account/{person.uid}"' in by_name
    assert "Znaleziono 1 konto" in by_name


def test_search_is_audited_with_actor_and_query(staff, audit):
    staff.get("/helpdesk/", query_string={"q": "kowal"})
    [event] = audit("helpdesk_search")
    assert event["actor"] == STAFF.uid and event["query"] == "kowal"


@pytest.mark.parametrize("query", ["*", "*)(uid=*", ")(|(objectClass=*", "\\", "a\x00b", "(", "**", "x" * 300])
def test_search_with_filter_characters_finds_nothing_it_should_not(staff, query):
    response = staff.get("/helpdesk/", query_string={"q": query})
    assert response.status_code in (200, 400)
    assert "/helpdesk/account/" not in response.get_data(as_text=True)


def test_search_shows_at_most_50_with_a_note(staff, slapd):
    for n in range(52):
        slapd.add_person(
            sandbox.Person(f"masowy{n:02d}", "Masowy", f"Student{n:02d}", "x-" * 10, (f"masowy{n:02d}@uni.example",))
        )
    page = staff.get("/helpdesk/", query_string={"q": "masowy"}).get_data(as_text=True)
    assert page.count('href="/helpdesk/account/masowy') == 50
    assert "Pasuje więcej niż 50 kont" in page


def test_shared_address_is_flagged(staff):
    page = staff.get("/helpdesk/", query_string={"q": "t.lewandowski@"}).get_data(as_text=True)
    assert '<span class="badge warn">wspólny</span>' in page  # beside the address
    assert page.count('<li class="badge warn">wspólny adres</li>') == 2  # and in both accounts' states
    account = staff.get("/helpdesk/account/tlewandowski").get_data(as_text=True)
    assert "należy do więcej niż jednego konta: tlewandowski, tlewandowski2" in account


def test_account_page_shows_locked_and_expired_states(staff, slapd, make_person, can_bind, audit):
    locked, expired, fine = make_person(), make_person(), make_person(recovery=False)
    for _ in range(sandbox.POLICY_MAX_FAILURE):
        can_bind(locked.dn, "wrong-password")
    policy = slapd.add_policy("helpdesk-expired", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    slapd.expire_password(expired.dn, policy)

    def rows(person):
        page = staff.get(f"/helpdesk/account/{person.uid}").get_data(as_text=True)
        return {
            "locked": "<dt>Zablokowane</dt><dd><strong>tak</strong>" in page
            and '<li class="badge bad">zablokowane</li>' in page,
            "expired": "<dt>Hasło wygasło</dt><dd><strong>tak</strong>" in page
            and '<li class="badge warn">hasło wygasło</li>' in page,
            "recovery": "***@private.example" in page,
            "addresses": all(a in page for a in person.mail),
        }

    assert rows(locked) == {"locked": True, "expired": False, "recovery": True, "addresses": True}
    assert rows(expired) == {"locked": False, "expired": True, "recovery": True, "addresses": True}
    assert rows(fine) == {"locked": False, "expired": False, "recovery": False, "addresses": True}
    assert {e["account"] for e in audit("helpdesk_viewed")} == {locked.uid, expired.uid, fine.uid}


def test_unknown_account_page_is_a_404(staff):
    assert staff.get("/helpdesk/account/nobody-here").status_code == 404
    assert staff.get("/helpdesk/account/*").status_code == 404


# -- issuing links


def test_link_to_the_recovery_address_works_through_the_reset_flow(
    staff, app, smtp, make_person, can_bind, audit, new_password, reset_flow, issue
):
    person = make_person()
    response = issue(staff, person.uid, delivery="recovery")
    assert response.status_code == 303
    [message] = smtp.wait_for(1)
    assert message["X-Envelope-To"] == person.recovery[0]
    assert "Pomoc IT wystawiła link" in smtp.text(message)
    assert "w ciągu 4 godzin" in smtp.text(message)
    stranger = app.test_client()
    assert reset_flow.set_password(smtp.link(message), client=stranger).status_code == 303
    assert can_bind(person.dn, new_password)
    [event] = audit("helpdesk_link")
    assert (event["actor"], event["account"], event["delivery"]) == (STAFF.uid, person.uid, "recovery")


def test_link_to_a_typed_address_needs_the_identity_check(
    staff, app, smtp, make_person, can_bind, new_password, reset_flow, issue
):
    person = make_person(recovery=False)
    refused = issue(staff, person.uid, delivery="address", address="przy.okienku@mail.example")
    assert refused.status_code == 303
    assert "Potwierdź, że sprawdzono tożsamość" in staff.get(refused.headers["Location"]).get_data(as_text=True)
    issue(staff, person.uid, delivery="address", address="przy.okienku@mail.example", identity_checked="y")
    [message] = smtp.wait_for(1, to="przy.okienku@mail.example")
    assert reset_flow.set_password(smtp.link(message), client=app.test_client()).status_code == 303
    assert can_bind(person.dn, new_password)


def test_recovery_delivery_without_a_recovery_address_says_so(staff, make_person, issue):
    person = make_person(recovery=False)
    response = issue(staff, person.uid, delivery="recovery")
    assert "To konto nie ma adresu awaryjnego" in staff.get(response.headers["Location"]).get_data(as_text=True)


def test_shown_once_link_is_not_shown_again_on_reload(
    staff, app, make_person, can_bind, new_password, reset_flow, issue
):
    person = make_person()
    response = issue(staff, person.uid, delivery="shown", identity_checked="y")
    page = staff.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert 'src="data:image/svg+xml' in html
    link = next(part for part in html.split() if "https://pwdrst.uni.example/pwdrst/reset/" in part)
    link = link[link.index("https://") :].split("<")[0]
    reload = staff.get(response.headers["Location"])
    assert reload.status_code == 410
    assert "/reset/" not in reload.get_data(as_text=True)
    assert reset_flow.set_password(link, client=app.test_client()).status_code == 303
    assert can_bind(person.dn, new_password)


def test_helpdesk_links_die_at_the_first_password_change(staff, app, smtp, make_person, reset_flow, issue):
    person = make_person()
    issue(staff, person.uid, delivery="recovery")
    link = smtp.link(smtp.wait_for(1)[0])
    with app.app_context():
        directory = app.extensions["pwdrst.directory"]
        directory.reset_password(directory.find_account(person.uid), "Zmienione-inaczej-w-miedzyczasie-1")
    assert reset_flow.open(link, client=app.test_client()).status_code == 410


def test_helpdesk_member_cannot_issue_for_a_protected_account(staff, smtp, app, make_person, audit, issue):
    person = make_person(groups=(sandbox.PROTECTED_GROUP,))
    page = staff.get(f"/helpdesk/account/{person.uid}").get_data(as_text=True)
    assert "To konto jest chronione" in page
    assert issue(staff, person.uid, delivery="recovery").status_code == 403
    assert audit("helpdesk_link")[-1]["reason"] == "protected"
    assert smtp.delivered(app) == []


def test_admin_group_member_can_issue_for_a_protected_account(admin, smtp, make_person, issue):
    person = make_person(groups=(sandbox.PROTECTED_GROUP,))
    assert issue(admin, person.uid, delivery="recovery").status_code == 303
    assert smtp.wait_for(1)[0]["X-Envelope-To"] == person.recovery[0]


def test_helpdesk_member_cannot_make_themselves_an_admin_through_a_typed_address(
    staff, smtp, app, make_person, audit, issue
):
    target = make_person(groups=(sandbox.ADMIN_GROUP,))
    page = staff.get(f"/helpdesk/account/{target.uid}").get_data(as_text=True)
    assert "To konto należy do pracownika Pomocy IT lub administratora" in page
    assert f'action="/helpdesk/account/{target.uid}/link"' not in page
    response = issue(staff, target.uid, delivery="address", address="pomocnik@mail.example", identity_checked="y")
    assert response.status_code == 403
    assert issue(staff, target.uid, delivery="shown", identity_checked="y").status_code == 403
    assert smtp.delivered(app) == []
    refusals = audit("helpdesk_link")
    assert [(e["outcome"], e["reason"], e["actor"], e["account"]) for e in refusals] == [
        ("refused", "staff", STAFF.uid, target.uid)
    ] * 2


# Who may issue a link for whom: (the one issuing, the groups of the account, status).
AUTHORITY = [
    ("helpdesk", (), 303),
    ("helpdesk", ("helpdesk",), 403),
    ("helpdesk", ("admin",), 403),
    ("helpdesk", ("protected",), 403),
    ("helpdesk", ("helpdesk", "admin"), 403),
    ("helpdesk", "self", 403),
    ("admin", (), 303),
    ("admin", ("helpdesk",), 303),
    ("admin", ("admin",), 303),
    ("admin", ("admin", "protected"), 303),
    ("admin", "self", 403),
]
GROUPS = {"helpdesk": sandbox.HELPDESK_GROUP, "admin": sandbox.ADMIN_GROUP, "protected": sandbox.PROTECTED_GROUP}


@pytest.mark.parametrize("role, groups, status", AUTHORITY)
def test_helpdesk_staff_issue_links_for_ordinary_accounts_only(
    app, smtp, make_person, audit, auth, issue, role, groups, status
):
    actor = make_person(groups=(GROUPS[role],))
    client = app.test_client()
    assert auth.on(client).login(actor.uid, actor.password).status_code == 303
    target = actor if groups == "self" else make_person(groups=tuple(GROUPS[g] for g in groups))
    page = client.get(f"/helpdesk/account/{target.uid}").get_data(as_text=True)
    assert (f'action="/helpdesk/account/{target.uid}/link"' in page) == (status == 303)
    assert issue(client, target.uid, delivery="recovery").status_code == status
    if status == 303:
        assert smtp.wait_for(1)[0]["X-Envelope-To"] == target.recovery[0]
    else:
        assert smtp.delivered(app) == []
        [event] = audit("helpdesk_link")
        assert event["outcome"] == "refused"
        assert event["reason"] == (
            "own_account" if groups == "self" else "staff" if {"helpdesk", "admin"} & set(groups) else "protected"
        )


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_HELPDESK_ISSUE": "2 per hour"}])
def test_issuing_is_rate_limited_per_staff_member(staff, make_person, config_overrides, issue):
    person = make_person()
    statuses = [issue(staff, person.uid, delivery="recovery").status_code for _ in range(3)]
    assert statuses == [303, 303, 429]


@pytest.mark.parametrize(
    "data",
    [{"delivery": "nonsense"}, {"delivery": "address", "address": "not-an-address", "identity_checked": "y"}, {}],
)
def test_bad_issue_forms_send_nothing(staff, smtp, make_person, data, app, issue):
    person = make_person()
    response = issue(staff, person.uid, **data)
    assert response.status_code == 303
    assert 'class="error-summary"' in staff.get(response.headers["Location"]).get_data(as_text=True)
    assert smtp.delivered(app) == []


def test_issue_without_csrf_is_refused(staff, make_person):
    person = make_person()
    assert staff.post(f"/helpdesk/account/{person.uid}/link", data={"delivery": "recovery"}).status_code == 400


def test_staff_see_a_password_that_must_be_changed(staff, slapd, make_person):
    person = make_person()
    slapd.modify(f"dn: {person.dn}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n", relax=True)
    page = staff.get(f"/helpdesk/account/{person.uid}").get_data(as_text=True)
    assert "tak: ustawione przez pomoc IT lub administratora" in page
    listed = staff.get(f"/helpdesk/?q={person.uid}").get_data(as_text=True)
    assert "musi zmienić hasło" in listed


@pytest.mark.parametrize("address", [None, "", "   "])
def test_a_typed_address_delivery_without_an_address_sends_nothing(
    staff, issue, make_person, smtp, app, audit, address
):
    person = make_person()
    data = {"delivery": "address", "identity_checked": "y"}
    if address is not None:
        data["address"] = address
    response = issue(staff, person.uid, **data)
    assert response.status_code == 303
    assert "Wpisz adres" in staff.get(response.headers["Location"]).get_data(as_text=True)
    assert smtp.delivered(app) == []
    assert audit("helpdesk_link") == []


def test_staff_land_on_the_helpdesk_after_login_unless_next_says_otherwise(client, auth, app):
    assert auth.login(STAFF.uid, STAFF.password).headers["Location"] == "/helpdesk/"
    auth.logout()
    response = auth.login(STAFF.uid, STAFF.password, query_string={"next": "/recovery"})
    assert response.headers["Location"] == "/recovery"


def test_link_sent_names_the_masked_recovery_address(staff, smtp, make_person, issue):
    person = make_person()
    response = issue(staff, person.uid, delivery="recovery")
    page = staff.get(response.headers["Location"]).get_data(as_text=True)
    local, domain = person.recovery[0].split("@")
    assert f"Link wysłano na {local[:2]}***@{domain}." in page
    assert person.recovery[0] not in page


def test_results_are_a_table_whose_cells_carry_their_labels_for_the_phone_cards(staff):
    page = staff.get("/helpdesk/", query_string={"q": "t.lewandowski@"}).get_data(as_text=True)
    assert '<table class="data results">' in page
    assert '<td data-label="Stan">' in page and '<td data-label="Adresy">' in page
