"""End to end: a real pynetdicom SCU talks to a real pynetdicom SCP over 127.0.0.1 through a
tiny recording TCP proxy in this test; the recorded bytes of both directions are then fed to
the analyzer, so it is proven on bytes a real implementation produced (loopback only)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from wire import dicom_pdus as w
from wire.dicom_pdus import Run

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]  # noqa: E402


class RecordingProxy:
    """Accepts one connection at a time on 127.0.0.1 and relays it to ``target``, recording
    ``(from_client, bytes)`` in arrival order (recorded before forwarding: causal order)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.chunks: list[tuple[bool, bytes]] = []
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._serve, daemon=True)
        t.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for src, dst, from_client in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, from_client), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                self.chunks.append((from_client, data))
            dst.sendall(data)

    def close(self) -> None:
        self.sock.close()
        for t in self._threads:
            t.join(timeout=5)


@pytest.fixture
def scp_and_proxy() -> Iterator[RecordingProxy]:
    ae = AE(ae_title="PACS-SCP")
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_supported_context(Verification)
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],
    )
    assert server is not None
    proxy = RecordingProxy(("127.0.0.1", server.server_address[1]))
    try:
        yield proxy
    finally:
        proxy.close()
        server.shutdown()


def _dataset(ts: UID) -> Dataset:
    ds = w.device_dataset(pixel_bytes=200_000)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ds


def test_pynetdicom_scu_to_scp_through_a_recording_proxy(scp_and_proxy: RecordingProxy) -> None:
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp_and_proxy.port, ae_title="PACS-SCP")
    assert assoc.is_established
    assert assoc.send_c_store(_dataset(ExplicitVRLittleEndian)).Status == 0
    assert assoc.send_c_store(_dataset(ImplicitVRLittleEndian)).Status == 0
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    scp_and_proxy.close()

    run = Run()
    for from_client, data in scp_and_proxy.chunks:
        run.analyzer.data(from_client, data, 1)
    assert run.analyzer.done
    run.close()
    assert run.anomalies == []
    (a,) = run.associations
    assert (a.calling_ae, a.called_ae, a.result) == ("MODALITY1", "PACS-SCP", "accepted")
    version = "PYNETDICOM_" + "".join(pynetdicom.__version__.split(".")[:3])
    assert a.implementation_class_uid == pynetdicom.PYNETDICOM_IMPLEMENTATION_UID
    assert a.implementation_version_name == version
    assert a.acceptor_implementation_class_uid == pynetdicom.PYNETDICOM_IMPLEMENTATION_UID
    assert a.commands == ["C-STORE-RQ", "C-STORE-RSP", "C-ECHO-RQ", "C-ECHO-RSP"]
    assert a.abstract_syntaxes == [CTImageStorage, Verification]
    assert a.bytes_to_server == sum(len(d) for fc, d in scp_and_proxy.chunks if fc)
    assert a.bytes_to_client == sum(len(d) for fc, d in scp_and_proxy.chunks if not fc)
    assert [
        (d.transfer_syntax, d.ip, d.manufacturer, d.software_versions) for d in run.devices
    ] == [
        (
            ExplicitVRLittleEndian,
            "10.20.0.5",
            w.DEVICE["manufacturer"],
            w.DEVICE["software_versions"],
        ),
        (
            ImplicitVRLittleEndian,
            "10.20.0.5",
            w.DEVICE["manufacturer"],
            w.DEVICE["software_versions"],
        ),
    ]
    wire = b"".join(d for _, d in scp_and_proxy.chunks)
    assert b"CANARY^PHI" in wire
    for canary in w.CANARIES:
        assert canary not in run.text()


def test_pynetdicom_abort(scp_and_proxy: RecordingProxy) -> None:
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp_and_proxy.port, ae_title="PACS-SCP")
    assert assoc.is_established
    assoc.abort()
    scp_and_proxy.close()
    run = Run()
    for from_client, data in scp_and_proxy.chunks:
        run.analyzer.data(from_client, data, 1)
    run.close()
    (a,) = run.associations
    assert (a.result, a.reason, a.result_raw) == (
        "aborted",
        "service-user: reason-not-specified",
        0,
    )
