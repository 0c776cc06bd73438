"""Reading a Zenodo record's file checksums: the shapes its API answers in, and failures."""

from __future__ import annotations

import json

import pytest

from stethoscope.data.download.record import parse_record, read_record

from .fixtures import Server

MD5 = "0123456789abcdef0123456789abcdef"


def test_every_shape_of_the_file_list_is_read() -> None:
    legacy = {
        "files": [
            {"key": "a.zip", "size": 10, "checksum": f"md5:{MD5}"},
            {"filename": "b.zip", "filesize": 20, "checksum": MD5.upper()},
        ]
    }
    invenio = {
        "files": {
            "enabled": True,
            "entries": {"a.zip": {"key": "a.zip", "size": 10, "checksum": f"md5:{MD5}"}},
        }
    }
    listing = {"entries": [{"key": "a.zip", "size": 10, "checksum": f"md5:{MD5}"}]}
    assert parse_record(legacy) == {"a.zip": (MD5, 10), "b.zip": (MD5, 20)}
    assert parse_record(invenio) == parse_record(listing) == {"a.zip": (MD5, 10)}
    # a checksum that is not an md5, a missing name, or no list at all give nothing
    assert (
        parse_record(
            {"files": [{"key": "c.zip", "checksum": "sha1:" + "0" * 40}, {"checksum": MD5}]}
        )
        == {}
    )
    assert parse_record({"metadata": {}}) == parse_record([]) == {}


def test_a_server_error_is_retried_and_a_missing_record_is_reported() -> None:
    server = Server()
    try:
        server.files["api/records/7"] = json.dumps(
            {"files": [{"key": "a.zip", "checksum": f"md5:{MD5}"}]}
        ).encode()
        server.faults.fail["7"] = 1
        assert read_record(7, server.url, backoff=0.01) == {"a.zip": (MD5, None)}
        assert server.faults.gets("7") == [None, None]
        with pytest.raises(OSError, match=r"api/records/8/files: HTTP 404"):
            read_record(8, server.url, backoff=0.01)
        server.files["api/records/9"] = b"<html>not json</html>"
        with pytest.raises(OSError, match="HTTP 404"):  # the /files listing is tried last
            read_record(9, server.url, backoff=0.01)
    finally:
        server.close()
