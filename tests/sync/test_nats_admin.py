"""sync/nats_admin.py without a server: the frame parser on whole, split and garbage
input (table and hypothesis), the commands it builds, and the JetStream API answers.
The socket client against a real cluster: tests/sync/test_cluster_reset.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.nats_admin import (
    MAX_CONTROL_LINE,
    ConnectOptions,
    Frame,
    JsApiRefused,
    NatsAdmin,
    NatsAdminError,
    NatsProtocolError,
    Op,
    connect_command,
    iter_frames,
    parse_consumer_delete,
    parse_delete,
    parse_frame,
    parse_stream_info,
    parse_stream_names,
    pub_command,
    sub_command,
    unsub_command,
)

WHOLE = [
    (b"PING\r\n", Frame(Op.PING)),
    (b"PONG\r\n", Frame(Op.PONG)),
    (b"+OK\r\n", Frame(Op.OK)),
    (b"ping\r\n", Frame(Op.PING)),  # operations are case-insensitive
    (b"-ERR 'Authorization Violation'\r\n", Frame(Op.ERR, text="Authorization Violation")),
    (b'INFO {"server_id":"X","max_payload":1048576}\r\n',
     Frame(Op.INFO, text='{"server_id":"X","max_payload":1048576}')),
    (b"MSG _INBOX.abc 1 5\r\nhello\r\n",
     Frame(Op.MSG, subject="_INBOX.abc", sid="1", payload=b"hello")),
    (b"MSG a.b 7 reply.to 0\r\n\r\n",
     Frame(Op.MSG, subject="a.b", sid="7", reply="reply.to", payload=b"")),
    (b"MSG a 1 4\r\na\r\nb\r\n", Frame(Op.MSG, subject="a", sid="1", payload=b"a\r\nb")),
    (b"HMSG _INBOX.x 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
     Frame(Op.HMSG, subject="_INBOX.x", sid="2", payload=b"", status=503)),
    (b"HMSG s 3 r 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nok\r\n",
     Frame(Op.HMSG, subject="s", sid="3", reply="r", payload=b"ok", status=None)),
]


@pytest.mark.parametrize(("data", "expected"), WHOLE)
def test_a_whole_frame_is_parsed_and_fully_consumed(data, expected):
    frame, used = parse_frame(data + b"PING\r\n")
    assert frame == expected
    assert used == len(data)


@pytest.mark.parametrize(("data", "expected"), WHOLE)
def test_every_prefix_of_a_frame_asks_for_more(data, expected):
    for cut in range(len(data)):
        assert parse_frame(data[:cut]) == (None, 0), data[:cut]


GARBAGE = [
    (b"HTTP/1.1 400 Bad Request\r\n", "not a NATS operation"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not a NATS operation"),
    (b"PING now\r\n", "with arguments"),
    (b"MSG a\r\n", "3 or 4 arguments"),
    (b"MSG a 1 2 3 4\r\n", "3 or 4 arguments"),
    (b"MSG a 1 x\r\n", "not a number"),
    (b"MSG a 1 -1\r\n", "not a number"),
    (b"MSG a 1 999999999999\r\n", "larger than"),
    (b"MSG a 1 2\r\nabcd\r\n", "not followed by CRLF"),
    (b"HMSG a 1 2\r\n", "4 or 5 arguments"),
    (b"HMSG a 1 9 3\r\nabc\r\n", "header size above"),
    (b"HMSG a 1 3 3\r\nabc\r\n", "without NATS/1.0"),
    (b"\xff\xfe\r\n", "not a NATS operation"),
    (b"X" * (MAX_CONTROL_LINE + 1), "no line end"),
]


@pytest.mark.parametrize(("data", "match"), GARBAGE)
def test_garbage_raises_the_modules_protocol_error_naming_the_problem(data, match):
    with pytest.raises(NatsProtocolError, match=match):
        parse_frame(data)


def test_iter_frames_takes_whole_frames_and_keeps_the_rest():
    buf = bytearray(b"PING\r\nMSG a 1 3\r\nabc\r\nMSG b 2 10\r\npart")
    frames = list(iter_frames(buf))
    assert [f.op for f in frames] == [Op.PING, Op.MSG]
    assert frames[1].payload == b"abc"
    assert bytes(buf) == b"MSG b 2 10\r\npart"


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_the_protocol_error(data):
    try:
        frame, used = parse_frame(data)
    except NatsProtocolError:
        return
    assert (frame is None and used == 0) or (frame is not None and 0 < used <= len(data))


_token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                 max_size=20)


@settings(max_examples=300)
@given(_token, st.integers(1, 99_999).map(str), st.one_of(st.none(), _token),
       st.binary(max_size=200), st.integers(0, 8))
def test_a_built_message_parses_back_from_any_split(subject, sid, reply, payload, cut):
    # what the server sends for a PUB is the PUB line with MSG and the sid put in
    head = f"MSG {subject} {sid} " + (f"{reply} " if reply else "") + f"{len(payload)}"
    data = head.encode() + b"\r\n" + payload + b"\r\n"
    buf = bytearray()
    frames: list[Frame] = []
    step = max(1, len(data) // (cut + 1))
    for i in range(0, len(data), step):
        buf += data[i:i + step]
        frames.extend(iter_frames(buf))
    assert frames == [Frame(Op.MSG, subject=subject, sid=sid, reply=reply, payload=payload)]
    assert buf == b""


@settings(max_examples=300)
@given(st.lists(st.sampled_from([d for d, _ in WHOLE]), max_size=6), st.binary(max_size=40))
def test_valid_frames_followed_by_noise_give_the_frames_then_error_or_wait(frames, noise):
    buf = bytearray(b"".join(frames) + noise)
    got: list[Frame] = []
    try:
        got.extend(iter_frames(buf))
    except NatsProtocolError:
        pass
    assert len(got) >= len(frames)


def test_connect_is_one_json_line_with_the_user_only_when_given():
    line = connect_command(ConnectOptions(user="kiosk.operator", password="p" * 16))
    assert line.startswith(b"CONNECT {") and line.endswith(b"}\r\n") and line.count(b"\r\n") == 1
    doc = json.loads(line[len(b"CONNECT "):])
    assert doc["user"] == "kiosk.operator" and doc["pass"] == "p" * 16
    assert doc["verbose"] is False and doc["pedantic"] is False and doc["echo"] is False
    assert doc["protocol"] == 1 and doc["headers"] is True and doc["no_responders"] is True
    anonymous = json.loads(connect_command(ConnectOptions())[len(b"CONNECT "):])
    assert "user" not in anonymous and "pass" not in anonymous


def test_sub_pub_unsub_commands():
    assert sub_command("_INBOX.x", "1") == b"SUB _INBOX.x 1\r\n"
    assert unsub_command("1") == b"UNSUB 1\r\n"
    assert pub_command("$JS.API.STREAM.NAMES", b"{}", "_INBOX.x") == \
        b"PUB $JS.API.STREAM.NAMES _INBOX.x 2\r\n{}\r\n"
    assert pub_command("a", b"") == b"PUB a 0\r\n\r\n"


@pytest.mark.parametrize("bad", ["", "a b", "a\r\nPUB x 0", "tab\there"])
def test_a_subject_with_spaces_or_line_breaks_is_refused_not_sent(bad):
    with pytest.raises(NatsAdminError, match="without spaces"):
        pub_command(bad, b"")
    with pytest.raises(NatsAdminError, match="without spaces"):
        sub_command(bad, "1")


def test_stream_names_pages_and_null():
    page = parse_stream_names(b'{"type":"io.nats.jetstream.api.v1.stream_names_response",'
                              b'"total":3,"offset":0,"limit":1024,'
                              b'"streams":["$MQTT_sess","$MQTT_msgs","$MQTT_rmsgs"]}')
    assert page.names == ("$MQTT_sess", "$MQTT_msgs", "$MQTT_rmsgs")
    assert (page.total, page.offset, page.limit) == (3, 0, 1024)
    empty = parse_stream_names(b'{"total":0,"offset":0,"limit":1024,"streams":null}')
    assert empty.names == () and empty.total == 0


def test_a_jetstream_error_is_one_line_with_its_codes_and_a_hint():
    with pytest.raises(JsApiRefused) as info:
        parse_stream_names(b'{"error":{"code":503,"err_code":10039,'
                           b'"description":"jetstream not enabled for account"}}')
    msg = str(info.value)
    assert "jetstream not enabled for account" in msg and "10039" in msg and "\n" not in msg
    assert "JetStream on" in msg
    with pytest.raises(JsApiRefused, match="no JetStream leader yet"):
        parse_delete(b'{"error":{"code":503,"err_code":10008,'
                     b'"description":"JetStream system temporarily unavailable"}}', "$MQTT_sess")


def test_delete_success_not_found_and_nonsense():
    assert parse_delete(b'{"success":true}', "$MQTT_sess") is True
    assert parse_delete(b'{"error":{"code":404,"err_code":10059,'
                        b'"description":"stream not found"}}', "$MQTT_sess") is False
    with pytest.raises(NatsProtocolError, match="neither success nor an error"):
        parse_delete(b'{"success":false}', "$MQTT_sess")


def test_consumer_delete_success_not_found_and_nonsense():
    """prune-consumers deletes one leftover at a time; one deleted meanwhile (by NATS, by
    another operator) or its stream gone is 'not there', not an error."""
    assert parse_consumer_delete(b'{"success":true}', "$MQTT_msgs", "abc_1") is True
    assert parse_consumer_delete(b'{"error":{"code":404,"err_code":10014,'
                                 b'"description":"consumer not found"}}',
                                 "$MQTT_msgs", "abc_1") is False
    assert parse_consumer_delete(b'{"error":{"code":404,"err_code":10059,'
                                 b'"description":"stream not found"}}',
                                 "$MQTT_msgs", "abc_1") is False
    with pytest.raises(JsApiRefused, match=r"deleting consumer abc_1 of \$MQTT_msgs"):
        parse_consumer_delete(b'{"error":{"code":500,"err_code":10012,'
                              b'"description":"boom"}}', "$MQTT_msgs", "abc_1")
    with pytest.raises(NatsProtocolError, match="neither success nor an error"):
        parse_consumer_delete(b'{"success":false}', "$MQTT_msgs", "abc_1")


@pytest.mark.parametrize("name", ["", "a b", "a.b", "a*", "a>", "x\n"])
def test_a_consumer_name_that_would_change_the_api_subject_is_refused(name):
    """A name from a node's /jsz goes into a subject: a dot or a wildcard would make it
    another subject (and NATS's durable names never hold them)."""
    admin = NatsAdmin("127.0.0.1", 1)  # never connected: the name is refused first
    with pytest.raises(NatsAdminError, match="consumer name"):
        admin.delete_consumer("$MQTT_msgs", name)


@pytest.mark.parametrize("subject", ["", "a b", "$MQTT.sess.*", "$MQTT.sess.>", "x\n"])
def test_a_message_get_takes_one_literal_subject(subject):
    """last_by_subj with a wildcard would answer with some other session's record."""
    admin = NatsAdmin("127.0.0.1", 1)  # never connected: the subject is refused first
    with pytest.raises(NatsAdminError, match="subject"):
        admin.last_message("$MQTT_sess", subject)
    with pytest.raises(NatsAdminError, match="stream name"):
        admin.last_message("$MQTT.sess", "$MQTT.sess.abc")


def test_stream_info_gives_the_creation_time_and_size_or_none():
    info = parse_stream_info(b'{"config":{"name":"$MQTT_rmsgs"},'
                             b'"created":"2026-12-04T15:00:00.123Z",'
                             b'"state":{"messages":12,"bytes":3400}}', "$MQTT_rmsgs")
    assert info is not None
    assert (info.created, info.messages) == ("2026-12-04T15:00:00.123Z", 12)
    assert parse_stream_info(b'{"error":{"code":404,"err_code":10059,'
                             b'"description":"stream not found"}}', "$MQTT_sess") is None
    with pytest.raises(NatsProtocolError, match="created"):
        parse_stream_info(b'{"state":{}}', "$MQTT_sess")


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[1,2]", b'"x"', b'{"streams":[1,2]}', b'{"streams":"x"}',
    b'{"streams":[],"total":-1}', b'{"streams":[],"total":"3"}', b'{"error":"bad"}',
    b'{"error":{"code":"x"}}', b"\xff\xfe", b"[" * 100_000,
])
def test_malformed_api_answers_raise_the_protocol_error(payload):
    with pytest.raises(NatsProtocolError):
        parse_stream_names(payload)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                              lambda c: st.lists(c, max_size=4)
                              | st.dictionaries(st.sampled_from(
                                  ["streams", "total", "offset", "limit", "error", "code",
                                   "err_code", "description", "success", "created", "state",
                                   "messages"]), c, max_size=5),
                              max_leaves=20).map(lambda d: json.dumps(d).encode())))
def test_any_api_answer_is_parsed_or_refused_with_the_modules_error(payload):
    for parse in (parse_stream_names, lambda p: parse_delete(p, "$MQTT_sess"),
                  lambda p: parse_stream_info(p, "$MQTT_sess"),
                  lambda p: parse_consumer_delete(p, "$MQTT_msgs", "abc_1")):
        try:
            parse(payload)
        except NatsAdminError:
            pass
