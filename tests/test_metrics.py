"""Prometheus metrics at /metrics: the counts after real flows, who may read them, and gunicorn's workers."""

import concurrent.futures
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pwdrst import sandbox

STAFF = sandbox.SAMPLE_PEOPLE[3]  # mzielinska, helpdesk group
OUTSIDER = {"REMOTE_ADDR": "203.0.113.9"}


def samples(text: str) -> dict:
    """Return {(sample name, frozenset of labels): value} of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scrape: dict, name: str, **labels) -> float:
    """Return one sample's value (0 when it was never counted)."""
    return scrape.get((name, frozenset(labels.items())), 0.0)


def scrape(client, **kwargs) -> dict:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def test_the_counts_follow_real_flows(app, client, smtp, make_person, reset_flow, auth, submit, new_password):
    person = make_person()
    link = reset_flow.link(person.uid)
    assert reset_flow.set_password(link).status_code == 303  # opened (a link used) and a reset
    assert reset_flow.open(link).status_code == 410  # used twice: refused
    reset_flow.request("nobody-at-all")
    # A refused new password: too short, through the change form.
    other = app.test_client()
    assert auth.on(other).login(person.uid, new_password).status_code == 303
    refused = submit(
        other, "/password", {"current_password": new_password, "new_password": "krotkie", "confirm": "krotkie"}
    )
    assert refused.status_code == 400
    # A helpdesk link.
    staff = app.test_client()
    assert auth.on(staff).login(STAFF.uid, STAFF.password).status_code == 303
    issued = submit(
        staff,
        f"/helpdesk/account/{person.uid}/link",
        {"delivery": "recovery"},
        form_url=f"/helpdesk/account/{person.uid}",
    )
    assert issued.status_code in (200, 303)
    smtp.delivered(app)

    seen = scrape(client)
    assert value(seen, "pwdrst_reset_requests_total", outcome="sent") == 1
    assert value(seen, "pwdrst_reset_requests_total", outcome="unknown") == 1
    assert value(seen, "pwdrst_links_used_total", outcome="ok") == 1
    assert value(seen, "pwdrst_links_used_total", outcome="used") == 1
    assert value(seen, "pwdrst_password_changes_total", kind="reset", outcome="ok") == 1
    assert value(seen, "pwdrst_password_changes_total", kind="change", outcome="refused") == 1
    assert value(seen, "pwdrst_policy_refusals_total", reason="too_short") == 1
    assert value(seen, "pwdrst_helpdesk_links_total", outcome="issued") == 1
    # Mail: the reset link, the change notice, the helpdesk link; all delivered, none waiting.
    assert value(seen, "pwdrst_mail_total", event="sent") == 3
    assert value(seen, "pwdrst_mail_total", event="failed") == 0
    assert value(seen, "pwdrst_mail_queue_depth") == 0
    assert value(seen, "pwdrst_directory_operations_total", operation="reset_password", outcome="ok") == 1
    assert value(seen, "pwdrst_directory_operations_total", operation="find_account", outcome="ok") >= 2
    assert value(seen, "pwdrst_directory_operation_duration_seconds_count", operation="reset_password") == 1
    assert value(seen, "pwdrst_http_requests_total", endpoint="reset.open_link", status="303") == 1
    assert value(seen, "pwdrst_http_requests_total", endpoint="reset.open_link", status="410") == 1
    assert value(seen, "pwdrst_http_request_duration_seconds_count", endpoint="reset.open_link") == 2


def test_rate_limit_refusals_are_counted(make_app, smtp, reset_flow):
    app = make_app(RATELIMIT_RESET_REQUEST="2 per minute")
    client = app.test_client()
    for _ in range(3):
        reset_flow.request("nobody-at-all", client=client)
    seen = scrape(client)
    assert value(seen, "pwdrst_rate_limit_refusals_total", limit="reset_request") == 1
    assert value(seen, "pwdrst_reset_requests_total", outcome="limited") == 1


def test_a_directory_outage_is_counted_by_outcome(make_app, own_slapd):
    app = make_app(LDAP_URL=[own_slapd.url])
    client = app.test_client()
    own_slapd.stop()
    assert client.get("/healthz").status_code == 503
    seen = scrape(client)
    assert value(seen, "pwdrst_directory_operations_total", operation="check_service", outcome="directory_unavailable")


def test_an_address_outside_metrics_allow_gets_a_plain_404(app, client, comparable):
    response = client.get("/metrics", environ_base=OUTSIDER)
    unknown = client.get("/nosuchpage", environ_base=OUTSIDER)
    assert response.status_code == 404
    # The same answer as for any unknown address (whose page names its own path in the language switch).
    status, headers, body = comparable(response)
    assert (status, headers, body.replace("metrics", "nosuchpage")) == comparable(unknown)
    assert b"pwdrst_" not in response.get_data()


def test_the_token_opens_it_from_anywhere(make_app):
    app = make_app(METRICS_TOKEN="scrape-token-0123456789", METRICS_ALLOW=["10.0.0.0/8"])
    client = app.test_client()
    assert client.get("/metrics").status_code == 404  # loopback is not in this METRICS_ALLOW
    good = {"Authorization": "Bearer scrape-token-0123456789"}
    assert client.get("/metrics", headers=good, environ_base=OUTSIDER).status_code == 200
    bad = {"Authorization": "Bearer scrape-token-0123456788"}
    assert client.get("/metrics", headers=bad, environ_base=OUTSIDER).status_code == 404
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_a_bad_metrics_allow_stops_start_up(settings):
    from pwdrst import create_app
    from pwdrst.config import ConfigError

    with pytest.raises(ConfigError, match="METRICS_ALLOW"):
        create_app(settings(METRICS_ALLOW=["not-a-network"]))


def test_counts_add_up_across_gunicorn_workers(project_root, server_settings, environment, redis_server, tmp_path):
    _, redis_uri = redis_server
    port = sandbox.free_port()
    folder = tmp_path / "metrics"
    settings = server_settings(
        PUBLIC_URL=f"http://127.0.0.1:{port}", TRUSTED_HOSTS=["127.0.0.1"], RATELIMIT_STORAGE_URI=redis_uri
    )
    env = environment(
        settings,
        PWDRST_GUNICORN_BIND=f"127.0.0.1:{port}",
        PWDRST_GUNICORN_WORKERS="2",
        PWDRST_GUNICORN_THREADS="4",
        PWDRST_GUNICORN_METRICS_DIR=str(folder),
        PWDRST_GUNICORN_ACCESS_LOG="",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    folder.mkdir()
    (folder / "counter_99999.db").write_bytes(b"left over from an earlier run")
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=project_root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        sandbox.wait_for_port(port, timeout=60)

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                    return answer.status
            except urllib.error.HTTPError as exc:
                return exc.code

        # The kernel gives each connection to whichever worker accepts first: ask until both have answered.
        count, pids = 0, set()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and count < 2000:
                assert list(pool.map(get, ["/healthz"] * 16)) == [200] * 16
                count += 16
                pids = {name for name in os.listdir(folder) if name.startswith("counter_")}
            assert list(pool.map(get, ["/no-such-page"] * 10)) == [404] * 10
        assert len(pids) == 2, f"only one worker answered {count} requests"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            seen = samples(answer.read().decode())
    finally:
        server.terminate()
        stderr = server.communicate(timeout=40)[1].decode()
    assert value(seen, "pwdrst_http_requests_total", endpoint="main.healthz", status="200") == count, stderr[-2000:]
    assert value(seen, "pwdrst_http_requests_total", endpoint="none", status="404") == 10
    assert value(seen, "pwdrst_directory_operations_total", operation="check_service", outcome="ok") == count
    assert value(seen, "pwdrst_http_request_duration_seconds_count", endpoint="main.healthz") == count
