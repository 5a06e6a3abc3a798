"""A small kubelet device plugin that advertises ``nvidia.com/gpu`` devices on a machine without a GPU.

It speaks the kubelet's device-plugin API v1beta1 (``k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto``)
over gRPC on unix sockets, as NVIDIA's plugin does: it registers with ``kubelet.sock``, streams its devices from
``ListAndWatch`` and answers ``Allocate``. So GPU placement goes through the real path: the kubelet puts the
devices in the node's capacity, the scheduler fits ``nvidia.com/gpu`` requests against it, and the kubelet's
admission calls ``Allocate`` before the container starts. Nothing is mounted: the container gets the env
``NVIDIA_VISIBLE_DEVICES`` (what NVIDIA's plugin sets) naming the allocated fake IDs, finds no CUDA device and
runs on the CPU.

The messages are built from a descriptor written here (field numbers and names as in api.proto; a test checks
them against the proto in the Go module cache) because the venv has grpcio and protobuf but no protoc.

Run: ``python -m tests.support.deviceplugin --count 1`` (as root, beside a running kubelet).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

API_VERSION = "v1beta1"
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")  # fixed in the kubelet (pluginapi.DevicePluginPath)
KUBELET_SOCKET = DEVICE_PLUGIN_DIR / "kubelet.sock"
RESOURCE_NAME = "nvidia.com/gpu"
VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"

_F = descriptor_pb2.FieldDescriptorProto
# message -> [(field, number, type, repeated, message type)]; the subset of api.proto this plugin uses.
MESSAGES: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "DevicePluginOptions": [
        ("pre_start_required", 1, _F.TYPE_BOOL, False, ""),
        ("get_preferred_allocation_available", 2, _F.TYPE_BOOL, False, ""),
    ],
    "RegisterRequest": [
        ("version", 1, _F.TYPE_STRING, False, ""),
        ("endpoint", 2, _F.TYPE_STRING, False, ""),
        ("resource_name", 3, _F.TYPE_STRING, False, ""),
        ("options", 4, _F.TYPE_MESSAGE, False, "DevicePluginOptions"),
    ],
    "Empty": [],
    "ListAndWatchResponse": [("devices", 1, _F.TYPE_MESSAGE, True, "Device")],
    "Device": [("ID", 1, _F.TYPE_STRING, False, ""), ("health", 2, _F.TYPE_STRING, False, "")],
    "PreStartContainerRequest": [("devices_ids", 1, _F.TYPE_STRING, True, "")],
    "PreStartContainerResponse": [],
    "AllocateRequest": [("container_requests", 1, _F.TYPE_MESSAGE, True, "ContainerAllocateRequest")],
    "ContainerAllocateRequest": [("devices_ids", 1, _F.TYPE_STRING, True, "")],
    "AllocateResponse": [("container_responses", 1, _F.TYPE_MESSAGE, True, "ContainerAllocateResponse")],
    "ContainerAllocateResponse": [("envs", 1, _F.TYPE_MESSAGE, True, "ContainerAllocateResponse.EnvsEntry")],
}


def _message_classes() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(name="reasoning/deviceplugin_v1beta1.proto", package=API_VERSION)
    fdp.syntax = "proto3"
    for name, fields in MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for field_name, number, ftype, repeated, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=ftype)
            field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if type_name:
                field.type_name = f".{API_VERSION}.{type_name}"
        if name == "ContainerAllocateResponse":  # map<string, string> envs = 1;
            entry = msg.nested_type.add(name="EnvsEntry")
            entry.options.map_entry = True
            for field_name, number in (("key", 1), ("value", 2)):
                entry.field.add(name=field_name, number=number, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{API_VERSION}.{name}")) for name in MESSAGES
    }


M = _message_classes()


def _unary(handler: Any, request: str, response: str) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=M[request].FromString, response_serializer=M[response].SerializeToString
    )


class FakeGpuPlugin:
    """Serve ``count`` healthy fake devices of ``resource_name`` on ``<plugin_dir>/<socket_name>``."""

    def __init__(
        self,
        count: int,
        *,
        resource_name: str = RESOURCE_NAME,
        plugin_dir: Path = DEVICE_PLUGIN_DIR,
        socket_name: str = "reasoning-fake-gpu.sock",
    ) -> None:
        self.device_ids = [f"FAKE-GPU-{i}" for i in range(count)]
        self.resource_name = resource_name
        self.plugin_dir = plugin_dir
        self.socket = plugin_dir / socket_name
        self.allocations: list[list[str]] = []
        self._stop = threading.Event()
        self._server: grpc.Server | None = None

    # --- DevicePlugin service
    def get_options(self, request: Any, context: Any) -> Any:
        return M["DevicePluginOptions"]()

    def list_and_watch(self, request: Any, context: Any) -> Iterator[Any]:
        devices = [M["Device"](ID=i, health="Healthy") for i in self.device_ids]
        yield M["ListAndWatchResponse"](devices=devices)
        while not self._stop.wait(1.0) and context.is_active():
            pass

    def allocate(self, request: Any, context: Any) -> Any:
        response = M["AllocateResponse"]()
        for container in request.container_requests:
            ids = list(container.devices_ids)
            self.allocations.append(ids)
            print(f"allocate {ids}", flush=True)
            response.container_responses.add().envs[VISIBLE_DEVICES_ENV] = ",".join(ids)
        return response

    def pre_start(self, request: Any, context: Any) -> Any:
        return M["PreStartContainerResponse"]()

    # --- lifecycle
    def serve(self) -> None:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "GetDevicePluginOptions": _unary(self.get_options, "Empty", "DevicePluginOptions"),
            "ListAndWatch": grpc.unary_stream_rpc_method_handler(
                self.list_and_watch,
                request_deserializer=M["Empty"].FromString,
                response_serializer=M["ListAndWatchResponse"].SerializeToString,
            ),
            "Allocate": _unary(self.allocate, "AllocateRequest", "AllocateResponse"),
            "PreStartContainer": _unary(self.pre_start, "PreStartContainerRequest", "PreStartContainerResponse"),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(f"{API_VERSION}.DevicePlugin", handlers)])
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server

    def register(self, kubelet_socket: Path = KUBELET_SOCKET, timeout: float = 60.0) -> None:
        """Register with the kubelet (retried until its socket answers: it may still be starting)."""
        request = M["RegisterRequest"](
            version=API_VERSION,
            endpoint=self.socket.name,
            resource_name=self.resource_name,
            options=M["DevicePluginOptions"](),
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with grpc.insecure_channel(f"unix://{kubelet_socket}") as channel:
                    call = channel.unary_unary(
                        f"/{API_VERSION}.Registration/Register",
                        request_serializer=M["RegisterRequest"].SerializeToString,
                        response_deserializer=M["Empty"].FromString,
                    )
                    call(request, timeout=5)
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stop(grace=1).wait()
        self.socket.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve and register; re-register when the kubelet restarts (its socket is recreated); exit on SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.deviceplugin", description=main.__doc__)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--resource", default=RESOURCE_NAME)
    parser.add_argument("--plugin-dir", type=Path, default=DEVICE_PLUGIN_DIR)
    args = parser.parse_args(argv)
    plugin = FakeGpuPlugin(args.count, resource_name=args.resource, plugin_dir=args.plugin_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    plugin.serve()
    kubelet_socket = args.plugin_dir / "kubelet.sock"
    plugin.register(kubelet_socket)
    print(f"registered {args.resource} x{args.count} at {plugin.socket}", flush=True)
    registered_inode = kubelet_socket.stat().st_ino
    while not stop.wait(1.0):
        try:
            inode = kubelet_socket.stat().st_ino
        except FileNotFoundError:
            continue
        if inode != registered_inode or not plugin.socket.exists():  # the kubelet restarted: register again
            if not plugin.socket.exists():
                plugin.stop()
                plugin = FakeGpuPlugin(args.count, resource_name=args.resource, plugin_dir=args.plugin_dir)
                plugin.serve()
            plugin.register(kubelet_socket)
            registered_inode = inode
            print("re-registered", flush=True)
    plugin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
