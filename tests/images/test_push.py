"""`make images-push REGISTRY=…` against a real registry: Debian's docker-registry (CNCF distribution 2.8), the
server many on-premises clusters run. The pushed manifest must name the very image that was built (its config
digest is the local image ID), under the retagged name, and pulling it back gives the same image."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scripts.images.build import BY_NAME, retag
from tests.images.podman import podman

REPO = Path(__file__).resolve().parents[2]
REGISTRY_BIN = "/usr/bin/docker-registry"  # Debian's package docker-registry (scripts/node/deps.sh installs it)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, accept: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    if not Path(REGISTRY_BIN).exists():
        pytest.fail(f"{REGISTRY_BIN} is missing: apt-get install docker-registry (scripts/node/deps.sh does)")
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (tmp_path / "registry.log").open("w")
    process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (_up(port) and _get(f"http://127.0.0.1:{port}/v2/")[0] == 200):
            assert process.poll() is None, (tmp_path / "registry.log").read_text()
            assert time.monotonic() < deadline, "the registry did not answer /v2/ within 30 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_images_push_puts_the_built_image_in_the_registry(
    engine: dict[str, str], require_image: Callable[[str], str], registry: str
) -> None:
    image = BY_NAME["operator"]  # the smallest image: the push path is the same for all five
    require_image(image.ref)
    built_id = podman("image", "inspect", "--format", "{{.Id}}", image.ref, env=engine).stdout.strip()
    target = retag(image.ref, f"{registry}/team")
    make = shutil.which("make")
    assert make, "make is missing"
    try:
        result = subprocess.run(
            [make, "images-push", f"REGISTRY={registry}/team", "IMAGES=operator", "TLS_VERIFY=false"],
            cwd=REPO, env=engine, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

        name, tag = target.split("/", 1)[1].rsplit(":", 1)  # team/operator, 0.1.0
        status, body = _get(f"http://{registry}/v2/{name}/tags/list")
        assert status == 200 and json.loads(body)["tags"] == [tag], body
        status, body = _get(f"http://{registry}/v2/{name}/manifests/{tag}", MANIFEST_TYPES)
        assert status == 200, body
        manifest = json.loads(body)
        assert manifest["config"]["digest"] == f"sha256:{built_id}", manifest["config"]
        for layer in manifest["layers"]:  # every layer the manifest names is really there
            assert _get(f"http://{registry}/v2/{name}/blobs/{layer['digest']}")[0] == 200, layer

        podman("rmi", target, env=engine)  # only the registry's copy is left under that name
        podman("pull", "--tls-verify=false", target, env=engine)
        pulled = podman("image", "inspect", "--format", "{{.Id}}", target, env=engine).stdout.strip()
        assert pulled == built_id
    finally:
        podman("rmi", target, env=engine, check=False)  # untag; the built image stays
    assert podman("image", "exists", image.ref, env=engine, check=False).returncode == 0
