"""Rendering: exact, deterministic OCI bytes and a content hash."""

from __future__ import annotations

import hashlib
import json

from agent.api.model import OciSeccomp
from agent.profiles.render import render


def profile(**fields: object) -> OciSeccomp:
    return OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_ERRNO", **fields})


def test_rendered_bytes_are_sorted_indented_and_end_with_newline() -> None:
    rendered = render(profile(syscalls=[{"names": ["write", "read"], "action": "SCMP_ACT_ALLOW"}]))
    assert rendered.content == (
        b'{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [\n    {\n'
        b'      "action": "SCMP_ACT_ALLOW",\n      "names": [\n        "write",\n'
        b'        "read"\n      ]\n    }\n  ]\n}\n'
    )
    assert rendered.sha256 == hashlib.sha256(rendered.content).hexdigest()


def test_same_profile_in_any_key_order_renders_the_same_bytes() -> None:
    a = OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1})
    b = OciSeccomp.model_validate({"defaultErrnoRet": 1, "defaultAction": "SCMP_ACT_ERRNO"})
    assert render(a) == render(b)


def test_unset_fields_are_left_out_and_large_values_survive() -> None:
    args = [{"index": 1, "value": 2**64 - 1, "op": "SCMP_CMP_MASKED_EQ"}]
    rendered = render(
        profile(syscalls=[{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": args}])
    )
    document = json.loads(rendered.content)
    assert set(document) == {"defaultAction", "syscalls"}
    assert document["syscalls"][0]["args"] == [
        {"index": 1, "value": 2**64 - 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
