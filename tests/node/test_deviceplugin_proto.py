"""The device plugin's hand-written message table matches the kubelet's api.proto (no protoc here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from tests.support.deviceplugin import MESSAGES
from tests.support.node import NODE_BUILD_SCRIPT

pytestmark = pytest.mark.node


def _api_proto() -> str:
    k8s = re.search(
        r"^K8S_VERSION=(\S+)", NODE_BUILD_SCRIPT.parent.parent.joinpath("controlplane/build.sh").read_text(), re.M
    )
    assert k8s is not None
    version = "v0." + k8s.group(1).removeprefix("v1.")
    go = "go" if subprocess.run(["which", "go"], capture_output=True).returncode == 0 else "/usr/local/go/bin/go"
    out = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubelet@{version}"], capture_output=True, text=True, check=True
    ).stdout
    directory = re.search(r'"Dir": "(.*)"', out)
    assert directory is not None
    return (Path(directory.group(1)) / "pkg/apis/deviceplugin/v1beta1/api.proto").read_text()


def test_message_fields_match_the_kubelet_proto() -> None:
    proto = _api_proto()
    for message, fields in MESSAGES.items():
        body = re.search(rf"^message {message} {{(.*?)^}}", proto, re.M | re.S)
        assert body is not None, message
        declared = {
            name: int(number)
            for name, number in re.findall(
                r"^\s*(?:repeated\s+)?(?:map<[^>]+>|\w+)\s+(\w+)\s*=\s*(\d+);", body.group(1), re.M
            )
        }
        for name, number, _type, _repeated, _type_name in fields:
            assert declared.get(name) == number, (message, name, declared)
