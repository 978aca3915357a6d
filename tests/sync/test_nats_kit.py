"""deploy/nats/ rendered by sync/nats_kit.py: sections kept or dropped whole, every
placeholder filled or a clear error, users.conf refusing what is not a terminal id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync import nats_kit
from sync.nats_kit import (
    FLEET_MAX_CONSUMERS,
    FLEET_MQTT_API_TIMEOUT_S,
    NatsKitError,
    NodeSpec,
    fit_to_version,
    needs_consumer_limit,
    parse_version,
    render_node,
    render_users,
)


def _spec(**kw) -> NodeSpec:  # type: ignore[no-untyped-def]
    return NodeSpec("n1", "127.0.0.1:4222", "127.0.0.1:8222", Path("/var/lib/nats/k"),
                    "0.0.0.0:8883", **kw)


def _body(text: str) -> str:
    return text.partition("\n\n")[2]


def test_a_cluster_node_with_tls_gets_every_section_and_no_placeholder_left():
    text = render_node(_spec(routes=("n2:6222", "n3:6222"), conf_dir=Path("/etc/nats/kiosk")))
    body = _body(text)
    assert "@" not in body and "# begin:" not in body and "# end:" not in body
    assert 'routes: ["nats-route://n2:6222", "nats-route://n3:6222"]' in body
    assert "verify_and_map: true" in body and 'include "users.conf"' in body
    assert 'ca_file: "/etc/nats/kiosk/clients-ca.pem"' in body
    assert "stream_replicas: 3" in body


def test_a_lone_node_without_tls_has_neither_cluster_nor_tls():
    body = _body(render_node(_spec(replicas=1)))
    assert "cluster {" not in body and "tls {" not in body and "users.conf" not in body
    assert "stream_replicas: 1" in body and "mqtt {" in body and "jetstream {" in body


def test_consumers_take_the_streams_replicas_unless_told_one():
    """As many copies as the streams is NATS's default, so no line at all: upstream
    releases refuse any consumer_replicas line in `nats-server -t` (test_cluster.py)."""
    assert "consumer_replicas" not in _body(render_node(_spec(routes=("n2:6222",))))
    assert "consumer_replicas" not in _body(render_node(_spec(routes=("n2:6222",),
                                                              consumer_replicas=3)))
    assert "consumer_replicas: 1" in _body(render_node(_spec(routes=("n2:6222",),
                                                             consumer_replicas=1)))
    assert "consumer_replicas" not in _body(render_node(_spec(replicas=1)))


@pytest.mark.parametrize("bad", [0, 2, 5])
def test_consumer_replicas_other_than_one_or_the_streams_are_refused(bad):
    with pytest.raises(NatsKitError, match=f"consumer replicas {bad}: use 1 or the streams' 3"):
        render_node(_spec(routes=("n2:6222",), consumer_replicas=bad))


def test_the_node_command_writes_the_consumer_replicas_it_is_given(tmp_path, capsys):
    from sync import broker_kit

    kit = broker_kit.init(tmp_path / "kit", "127.0.0.1")
    out = tmp_path / "kiosk.conf"
    assert nats_kit.main(["node", "--kit", str(kit.dir), "--name", "n1", "--routes",
                          "n2:6222,n3:6222", "--conf-dir", str(tmp_path / "conf"),
                          "--consumer-replicas", "1", "--out", str(out)]) == 0
    assert "consumer_replicas: 1" in out.read_text()
    assert nats_kit.main(["node", "--kit", str(kit.dir), "--name", "n1", "--routes",
                          "n2:6222", "--conf-dir", str(tmp_path / "conf"),
                          "--consumer-replicas", "2", "--out", str(out)]) == 1
    assert "consumer replicas 2" in capsys.readouterr().err


def test_the_consumer_limit_line_is_there_only_when_asked_for():
    plain = _body(render_node(_spec(routes=("n2:6222",))))
    assert "default_max_consumers" not in plain and "limits {" not in plain
    limited = _body(render_node(_spec(routes=("n2:6222",), max_consumers=1_000_000)))
    assert "limits { default_max_consumers: 1000000 }" in limited
    jetstream = limited[limited.index("jetstream {"):]
    jetstream = jetstream[:jetstream.index("\n}\n")]  # the block, to its closing brace
    assert "default_max_consumers: 1000000" in jetstream
    assert limited.count("{") == limited.count("}")


@pytest.mark.parametrize("bad", [0, -1])
def test_a_consumer_limit_below_one_is_refused(bad):
    with pytest.raises(NatsKitError, match=f"max consumers {bad}: use a positive number"):
        render_node(_spec(max_consumers=bad))


@pytest.mark.parametrize(("text", "version", "needs"), [
    ("nats-server: v2.9.10\n", (2, 9, 10), False),
    ("2.14.6", (2, 14, 6), False),
    ("v2.15.0", (2, 15, 0), True),
    ("nats-server: v2.15.1", (2, 15, 1), True),
    ("v3.0.0-beta.1", (3, 0, 0), True),
])
def test_the_versions_that_need_the_consumer_limit(text, version, needs):
    assert parse_version(text) == version
    assert needs_consumer_limit(text) is needs


@pytest.mark.parametrize(("version", "max_consumers"), [
    ("nats-server: v2.9.10", None), ("2.12.8", None), ("2.14.6", None),
    ("v2.15.1", FLEET_MAX_CONSUMERS), ("nats-server: v2.16.0", FLEET_MAX_CONSUMERS),
])
def test_fitting_a_node_to_its_release_keeps_the_consumer_limit_from_2_15_on(
        version, max_consumers):
    spec, said = fit_to_version(_spec(routes=("n2:6222",)), version)
    assert spec.max_consumers == max_consumers
    assert any("consumer_limit" in x for x in said) is (max_consumers is not None)
    body = _body(render_node(spec))
    assert ("default_max_consumers" in body) is (max_consumers is not None)
    assert "consumer_replicas" not in body


def test_fitting_keeps_a_consumer_limit_the_operator_chose_and_refuses_it_before_2_15():
    spec, said = fit_to_version(_spec(routes=("n2:6222",), max_consumers=80_000,
                                      mqtt_api_timeout_s=20), "2.15.1")  # nothing to say
    assert spec.max_consumers == 80_000 and said == []
    with pytest.raises(NatsKitError, match=re.escape("NATS 2.14.6 refuses default_max_consumers")):
        fit_to_version(_spec(routes=("n2:6222",), max_consumers=80_000), "2.14.6")


@pytest.mark.parametrize(("version", "takes"), [
    ("nats-server: v2.9.10", False), ("2.11.2", False), ("2.11.3", True), ("2.12.8", True),
    ("v2.15.1", True),
])
def test_fitting_a_node_to_its_release_names_the_mqtt_api_timeout_where_it_exists(
        version, takes):
    """NATS's 5 s let a connect storm's consumer creations time out near capacity, each
    refusal leaving an orphan consumer that loaded the cluster further (docs/fleet.md):
    where the release takes the setting, the kit says so; the choice stays the
    operator's (it delays a node's MQTT after a start by as much)."""
    spec, said = fit_to_version(_spec(routes=("n2:6222",)), version)
    assert spec.mqtt_api_timeout_s is None
    assert any(f"--mqtt-api-timeout {FLEET_MQTT_API_TIMEOUT_S}" in x for x in said) is takes
    assert "js_api_timeout" not in _body(render_node(spec))
    if takes:
        spec, _ = fit_to_version(_spec(routes=("n2:6222",),
                                       mqtt_api_timeout_s=FLEET_MQTT_API_TIMEOUT_S), version)
        body = _body(render_node(spec))
        mqtt_block = body[body.index("mqtt {"):]
        assert f'js_api_timeout: "{FLEET_MQTT_API_TIMEOUT_S}s"' in mqtt_block, mqtt_block


def test_an_mqtt_api_timeout_is_kept_as_chosen_and_refused_where_nats_lacks_it():
    spec, said = fit_to_version(_spec(mqtt_api_timeout_s=12), "2.14.6")
    assert spec.mqtt_api_timeout_s == 12 and not any("api_timeout" in x for x in said)
    assert 'js_api_timeout: "12s"' in _body(render_node(spec))
    with pytest.raises(NatsKitError, match=re.escape("NATS 2.9.10 refuses mqtt js_api_timeout")):
        fit_to_version(_spec(mqtt_api_timeout_s=30), "2.9.10")
    for bad in (0, -5):
        with pytest.raises(NatsKitError, match="whole seconds, 1 or more"):
            render_node(_spec(mqtt_api_timeout_s=bad))
    assert "js_api_timeout" not in _body(render_node(_spec()))  # no release said: no line


@pytest.mark.parametrize(("version", "honoured"), [
    ("2.9.10", True), ("2.9.11", True), ("2.9.12", False), ("2.12.8", False),
    ("2.15.1", False),
])
def test_fitting_refuses_one_copy_consumers_where_the_release_ignores_them(version, honoured):
    one_copy = _spec(routes=("n2:6222",), consumer_replicas=1)
    if honoured:
        spec, _ = fit_to_version(one_copy, version)
        assert "consumer_replicas: 1" in _body(render_node(spec))
    else:
        ignored = re.escape(f"NATS {version} ignores consumer_replicas")
        with pytest.raises(NatsKitError, match=ignored):
            fit_to_version(one_copy, version)
    lone, _ = fit_to_version(_spec(replicas=1, consumer_replicas=1), version)
    assert "consumer_replicas" not in _body(render_node(lone))  # one copy is all there is


def _node_command(tmp_path: Path) -> tuple[list[str], Path]:
    """`node` for n1 of three with a new broker kit, and the file it writes."""
    from sync import broker_kit

    kit = broker_kit.init(tmp_path / "kit", "127.0.0.1")
    out = tmp_path / "kiosk.conf"
    return ["node", "--kit", str(kit.dir), "--name", "n1", "--routes", "n2:6222,n3:6222",
            "--conf-dir", str(tmp_path / "conf"), "--out", str(out)], out


def test_the_node_command_fits_the_file_to_the_release_it_is_told(tmp_path, capsys):
    args, out = _node_command(tmp_path)
    assert nats_kit.main([*args, "--for-version", "nats-server: v2.15.1"]) == 0
    assert f"default_max_consumers: {FLEET_MAX_CONSUMERS}" in out.read_text()
    assert "consumer_limit section kept" in capsys.readouterr().out
    out.unlink()
    assert nats_kit.main([*args, "--for-version", "2.14.6", "--consumer-replicas", "1"]) == 1
    assert "ignores consumer_replicas" in capsys.readouterr().err
    assert not out.exists()
    assert nats_kit.main([*args, "--for-version", "latest"]) == 1
    assert "no NATS version in 'latest'" in capsys.readouterr().err


def test_a_version_string_without_a_version_is_an_error():
    with pytest.raises(NatsKitError, match="no NATS version"):
        parse_version("nats-server: unknown")


def test_the_node_command_writes_the_consumer_limit_it_is_given(tmp_path, capsys):
    args, out = _node_command(tmp_path)
    assert nats_kit.main([*args, "--max-consumers", "1000000"]) == 0
    assert "default_max_consumers: 1000000" in out.read_text()
    assert nats_kit.main(args) == 0
    assert "default_max_consumers" not in out.read_text()
    assert nats_kit.main([*args, "--max-consumers", "0"]) == 1
    assert "max consumers 0" in capsys.readouterr().err


def test_a_template_placeholder_without_a_value_is_an_error():
    template = (nats_kit.SHIPPED / nats_kit.NODE).read_text() + "\nfoo: @UNKNOWN_THING@\n"
    with pytest.raises(NatsKitError, match="@UNKNOWN_THING@"):
        render_node(_spec(), template)


def test_users_conf_has_the_desk_and_one_block_per_terminal():
    text = render_users(["T0001", "T-2"])
    assert text.count('{ user: "CN=') == 3
    assert '"kiosk.v1.T0001.payments"' in text and '"kiosk.v1.T-2.cmd"' in text
    assert "@ID@" not in text.partition("authorization")[2]
    assert "# begin:" not in text


@pytest.mark.parametrize("bad", ["kiosk.desk", "T.1", "*", "", "T1 T2"])
def test_users_conf_refuses_what_is_not_a_terminal_id(bad):
    with pytest.raises(NatsKitError, match="not a terminal id"):
        render_users(["T0001", bad])


def test_users_conf_refuses_a_terminal_listed_twice():
    with pytest.raises(NatsKitError, match="twice"):
        render_users(["T0001", "T0001"])


OPERATOR_PW = "correct-horse-battery-9"


def test_users_conf_without_an_operator_password_has_no_operator_and_no_client_port_user():
    text = render_users(["T0001"])
    body = text.partition("authorization")[2]
    assert "kiosk.operator" not in body and "@OPERATOR_PASSWORD@" not in body
    assert '"STANDARD"' not in body


def test_users_conf_with_an_operator_password_has_the_operator_on_the_client_port_only():
    text = render_users(["T0001"], operator_password=OPERATOR_PW)
    header, _, body = text.partition("authorization")
    assert OPERATOR_PW not in text  # only its hash
    assert _operator_hash(body).startswith("$2a$11$")
    assert "$2a$" not in header  # substituted in its section only
    assert "@" not in body and "# begin:" not in text and "# end:" not in text
    assert 'allowed_connection_types: ["STANDARD"]' in body
    operator = body[body.index("kiosk.operator"):body.index('"CN=T0001"')]
    assert '"$JS.API.STREAM.DELETE.$MQTT_sess"' in operator
    assert '"$JS.API.STREAM.DELETE.$MQTT_msgs"' in operator
    assert '"$JS.API.CONSUMER.DELETE.$MQTT_msgs.*"' in operator  # prune-consumers
    assert "rmsgs" not in operator and "kiosk.v1" not in operator
    assert text.count('{ user: "CN=') == 2  # the desk and T0001, as before


def _operator_hash(users_conf: str) -> str:
    m = re.search(r'\{ user: "kiosk\.operator", password: "([^"]+)"', users_conf)
    assert m is not None, users_conf
    return m.group(1)


@pytest.mark.parametrize("password", [
    OPERATOR_PW,
    'quotes-"and"-a-backslash\\-in-it',  # only the hash goes into the "..."
    "$2a$10$looks-like-a-bcrypt-hash",  # hashed like any other
    "пароль-оператора-на-кириллице",  # 29 characters, 57 bytes in UTF-8
])
def test_users_conf_holds_a_bcrypt_hash_that_checks_the_operator_password(password):
    import bcrypt

    text = render_users(["T0001"], operator_password=password)
    hashed = _operator_hash(text)
    assert password not in text
    assert bcrypt.checkpw(password.encode("utf-8"), hashed.encode())
    assert not bcrypt.checkpw((password + "x").encode("utf-8"), hashed.encode())
    # a new salt at every rendering: the same password, another hash; both check
    again = _operator_hash(render_users(["T0001"], operator_password=password))
    assert again != hashed and bcrypt.checkpw(password.encode("utf-8"), again.encode())


@pytest.mark.parametrize(("bad", "match"), [
    ("short-pw", "at least 16"),
    ("a-newline\nin-the-password", "newlines"),
    ("a-tab\tin-the-password-xx", "control characters"),
    ("a-delete\x7fin-the-password", "control characters"),
    ("x" * 73, "73 bytes in UTF-8; bcrypt reads at most 72"),
    ("ж" * 37, "74 bytes in UTF-8"),  # 37 characters, but 2 bytes each
])
def test_users_conf_refuses_an_operator_password_it_cannot_hold_safely(bad, match):
    with pytest.raises(NatsKitError, match=match):
        render_users(["T0001"], operator_password=bad)


def test_without_bcrypt_the_operator_user_is_refused_with_what_to_install(mocker):
    mocker.patch.dict("sys.modules", {"bcrypt": None})  # as on a machine without the extra
    with pytest.raises(NatsKitError, match=r"bcrypt package: pip install 'kiosk-agent\[desk\]'"):
        render_users(["T0001"], operator_password=OPERATOR_PW)
    assert "kiosk.operator" not in render_users(["T0001"]).partition("authorization")[2]


def test_users_command_writes_the_operator_section_from_a_password_file(tmp_path, capsys):
    ids, pw, out = tmp_path / "ids.txt", tmp_path / "pw", tmp_path / "users.conf"
    ids.write_text("T0001\nT0002\n")
    pw.write_text(OPERATOR_PW + "\n")
    assert nats_kit.main(["users", "--ids", str(ids), "--out", str(out),
                          "--operator-password-file", str(pw)]) == 0
    written = out.read_text()
    assert OPERATOR_PW not in written and _operator_hash(written).startswith("$2a$")
    assert "kiosk.operator" in capsys.readouterr().out
    pw.write_text("short\n")
    assert nats_kit.main(["users", "--ids", str(ids), "--out", str(out),
                          "--operator-password-file", str(pw)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nats_kit: ") and "at least 16" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["reset-sessions"],
    ["reset-sessions", "--server", "nohostport:"],
    ["reset-sessions", "--server", "h:99999"],
    ["reset-sessions", "--server", "h:4222", "--user", "u"],
    ["reset-sessions", "--server", "h:4222", "--timeout", "0"],
])
def test_reset_sessions_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        nats_kit.main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_the_node_command_names_the_terminals_side_of_an_mqtt_api_timeout(tmp_path, capsys):
    """A node that may hold a CONNECT for N s needs terminals that wait longer: with the
    agent's 10 s they give up first and try again, adding to the node's load."""
    from kiosk.config import parse_config

    args, _ = _node_command(tmp_path)
    assert nats_kit.main([*args, "--mqtt-api-timeout", "30"]) == 0
    said = capsys.readouterr().out
    line = next(x for x in said.splitlines() if x.startswith("MQTT js_api_timeout 30 s"))
    wait = 30 + nats_kit.CONNECT_TIMEOUT_MARGIN_S
    assert f"[mqtt] connect_timeout_s = {wait}" in line and f"--connect-timeout {wait}" in line
    # the line's settings, as written, are a valid [mqtt] table that outlasts the node's hold
    settings = line.split("[mqtt] ", 1)[1].split(", and ", 1)[0]
    table = {k.strip(): int(v) for k, v in (x.split("=") for x in settings.split(" with "))}
    assert set(table) == {"connect_timeout_s", "keepalive_s"}
    mqtt = parse_config({"mqtt": table}, "kiosk.toml", tmp_path).mqtt
    assert mqtt.connect_timeout_s > 30 and mqtt.keepalive_s > mqtt.connect_timeout_s
    assert nats_kit.main(args) == 0
    assert "connect_timeout_s" not in capsys.readouterr().out  # NATS's own 5 s: nothing to do
