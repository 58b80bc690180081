"""A record sealed in the format written since issue 20 (``sealed`` version 0x01, whole body
under AES-256-GCM; docs/privacy.md) is on the log for ever: this one, written by the code of
2026-12-07 with a known data key, must keep opening to its body byte for byte and folding to
the same events, and to its facts once the key is gone or of another generation."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.envelope import decode_envelope
from contracts.ingest import parse_webhook
from contracts.normalise import normalise
from parley.privacy.datakey import DataKey
from parley.privacy.seal import open_envelope, sealed_generation

SECRET = bytes(range(32))
SUBJECT = "natterly:chat:c0ffee00-0000-4000-8000-000000000001"
BODY = (
    b'{"event":"ChatInitiated","timestamp":1700000000,"payload":{"chat":{"uuid":"c0ffee00-0000-'
    b'4000-8000-000000000001","status":"Initiated","subject":"Where is my parcel?","ip_address":'
    b'"81.2.69.160","city":"Manchester","visitor":{"uuid":"7e57ab1e-0000-4000-8000-000000000002",'
    b'"name":"Priya Patel","email_address":"priya@example.org","anonymous":false},"department":'
    b'{"uuid":"d1","name":"Sales"}},"messages":[{"uuid":"m1","chat":"c0ffee00-0000-4000-8000-'
    b'000000000001","text":"Hi, where is my order ORD-10442?","created_at":1700000001,'
    b'"posted_by_visitor":true,"author":{"type":"Visitor","name":"Priya Patel"}}]}}')
RECORD = (
    b'{"schema_version":1,"event_id":"natterly-4c37d691-64db-8e8e-bb35-f83cbfbda7b4","provider'
    b'":"natterly","source":"acme","event_type":"ChatInitiated","aggregate":"chat","key":"c0ff'
    b'ee00-0000-4000-8000-000000000001","occurred_at":"2023-11-14T22:13:20Z","received_at":"20'
    b'26-12-07T06:00:00Z","body":{"event":"ChatInitiated","timestamp":1700000000,"payload":{"c'
    b'hat":{"uuid":"c0ffee00-0000-4000-8000-000000000001","status":"Initiated","department":{"'
    b'uuid":"d1","name":"Sales"},"visitor":{"uuid":"7e57ab1e-0000-4000-8000-000000000002","ano'
    b'nymous":false}},"messages":[{"uuid":"m1","chat":"c0ffee00-0000-4000-8000-000000000001","'
    b'posted_by_visitor":true,"created_at":1700000001,"author":{"type":"Visitor"}}]}},"subject'
    b'":"natterly:chat:c0ffee00-0000-4000-8000-000000000001","sealed":"AQAAAAEGZnw18JGT2n6bIKZ'
    b'cbdzcUDpQTJuD7im29g+ZXNWPEwVz9mUbXsTngdhWKydqNynFgudL37fWJ2DvFq8E5FLNpBOYX0NK1m5JskcsHw3'
    b'QYaPT6BLypiQtXhVUtvSoOG/ILo6ZTX9CmI9v89VDLNurAoz/B9+KyJ77D1ewQx7b6vPGMxbGMHJ9qaBPbi5kdSQ'
    b'r6nP5QVUh5efH7YfITzAPbQdCziVuEXor2gnyfCUVn/Xxp+cQ3lrpC2asrfCfxdYyOXQ6rEqEK1zbWbfmUdeCFpp'
    b'jZfsDpp2rKx12vvgzLnYJrMyGVaAV84Axu8W96a2g4/GgMXSxR6T99pn11tGPDdAvzxZsJNR6ZKk0IdoyAAJHEsA'
    b'oUSWU0OHtpkIjUIn7D0+rBmZ23xX/HG/Zn9gtaDgVZjz6URVqlPnS7PfnBQ7KUhO4icqPRziWa6B6pWoXV2yINlG'
    b'qCbJSu7uP5VN1Rnpj/AqspeUnGfYZZl3Ya8D03BIdUYKWdSVA1GkeKymii6Ri/8hyT9OiVuOR+dT+46ci8QI8oJ4'
    b'9vP831VDP6dy0Zqqkz4jxIHUi1ciR08RD+XmkeouxtA1N/uZJeIiVTEOhWK3uNzZetGAu0SvSjXEwsvBe0lALP9E'
    b'JWBgmGs9qCbkdXerc1gHBX1ljgMGjA4pUk2V3lcr6PYyvuhkJeDglQQIsx8o4BtSqjP99uS4tGYcKO8QoxJjqlaZ'
    b'kwjS8Z45uBhYHf47375R1mURlgE+/Nf5euASkAdH1xKIE46bZZfLwuNA95tpTrojgyO0q44RTtoAatVJPb6gnmyC'
    b'ajK2ceCkdt57YkIcpF03CFPKICEPcwcim"}'
)
PERSONAL = (b"Priya", b"priya@", b"81.2.69.160", b"Manchester", b"ORD-10442", b"parcel")


def _plain() -> object:
    return parse_webhook("natterly", "acme", BODY,
                         received_at=datetime(2026, 12, 7, 6, 0, tzinfo=UTC))


def test_the_record_holds_no_personal_string() -> None:
    for text in PERSONAL:
        assert text not in RECORD, text


def test_it_opens_to_its_body_byte_for_byte_and_folds_as_before() -> None:
    stored = decode_envelope(RECORD)
    assert stored.subject == SUBJECT and sealed_generation(stored) == 1
    opened = open_envelope(stored, DataKey(SUBJECT, 1, SECRET), AESGCM(SECRET))
    assert bytes(opened.body) == BODY
    plain = _plain()
    assert opened == msgspec.structs.replace(plain, subject=SUBJECT)  # type: ignore[type-var]
    assert normalise(opened) == normalise(plain)  # type: ignore[arg-type]


def test_without_its_key_it_opens_to_its_facts() -> None:
    stored = decode_envelope(RECORD)
    other = bytes(32)
    for key, aead in ((None, None), (DataKey(SUBJECT, 2, SECRET), AESGCM(SECRET)),
                      (DataKey(SUBJECT, 1, other), AESGCM(other))):
        facts = open_envelope(stored, key, aead)
        assert isinstance(facts.sealed, msgspec.UnsetType)
        assert bytes(facts.body) == bytes(stored.body)
        assert not any(text in bytes(facts.body) for text in PERSONAL)
        assert [type(e) for e in normalise(facts)] == [type(e) for e in normalise(stored)]
