"""ContractError: one error type, carrying a JSON path."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from contracts.decoding import check_utf8, decode
from contracts.errors import ContractError


class Chat(msgspec.Struct):
    uuid: str


class Payload(msgspec.Struct):
    chat: Chat


PAYLOAD = msgspec.json.Decoder(Payload)


def test_is_a_value_error_with_readable_str() -> None:
    error = ContractError("Expected `str`, got `int`", "$.payload.chat.uuid")
    assert isinstance(error, ValueError)
    assert error.path == "$.payload.chat.uuid"
    assert error.detail == "Expected `str`, got `int`"
    assert str(error) == "Expected `str`, got `int` (at $.payload.chat.uuid)"
    assert error.retriable is False


def test_default_path_is_root() -> None:
    assert ContractError("bad").path == "$"


def test_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ContractError("bad", "$.x")))  # noqa: S301 - our own bytes
    assert (error.detail, error.path) == ("bad", "$.x")


def test_validation_error_path_is_extracted() -> None:
    with pytest.raises(ContractError) as caught:
        decode(PAYLOAD, b'{"chat": {"uuid": 5}}')
    assert caught.value.path == "$.chat.uuid"
    assert caught.value.detail == "Expected `str`, got `int`"


def test_prefix_makes_nested_paths_absolute() -> None:
    with pytest.raises(ContractError) as caught:
        decode(PAYLOAD, b'{"chat": {}}', "$.payload")
    assert caught.value.path == "$.payload.chat"
    assert "missing required field `uuid`" in caught.value.detail


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b'{"chat": ', b"[]x", b"\xff", b"nul", b"{" * 100_000],
)
def test_malformed_input_is_a_contract_error_at_root(data: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        decode(PAYLOAD, data)
    assert caught.value.path.startswith("$")


def test_deep_nesting_is_a_contract_error() -> None:
    data = b'{"chat": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with pytest.raises(ContractError) as caught:
        decode(msgspec.json.Decoder(), data)
    assert caught.value.path.startswith("$")


def test_check_utf8_reports_the_byte() -> None:
    check_utf8("héllo".encode())
    with pytest.raises(ContractError) as caught:
        check_utf8(b'{"a": "\xc3"}')
    assert caught.value.detail == "invalid UTF-8 at byte 7"


def test_check_utf8_accepts_raw_buffers() -> None:
    check_utf8(msgspec.Raw('"ü"'.encode()))
    with pytest.raises(ContractError):
        check_utf8(msgspec.Raw(b'"\xed\xa0\x80"'))  # an encoded surrogate is not UTF-8
