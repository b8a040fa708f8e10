"""Test certificates made with the openssl CLI: a private CA, a server certificate for
127.0.0.1/localhost (or for names of your choice) and a client certificate, all PEM, all
signed by the CA."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="needs the openssl command to make a CA and certificates")

_CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def make_ca(folder: Path, name: str = "ca") -> Path:
    openssl("req", "-x509", *_CURVE, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN=mbackup test {name}", cwd=folder)
    return folder / f"{name}.pem"


def _sign(folder: Path, ca: str, name: str, cn: str, extensions: str) -> tuple[Path, Path]:
    openssl("req", *_CURVE, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
            cwd=folder)
    (folder / f"{name}.ext").write_text(extensions)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


def server_cert(folder: Path, name: str, alt_names: str, ca: str = "ca") -> tuple[Path, Path]:
    """A server certificate valid for ``alt_names`` only (``IP:1.2.3.4, DNS:host``), signed by ``ca``."""
    return _sign(folder, ca, name, alt_names.split(",")[0].split(":", 1)[1].strip(),
                 f"subjectAltName = {alt_names}\n"
                 "basicConstraints = CA:FALSE\n"
                 "keyUsage = digitalSignature, keyEncipherment\n"
                 "extendedKeyUsage = serverAuth\n")


def make_pki(folder: Path) -> Pki:
    """A CA in ``folder`` and the server and client certificates it signed."""
    make_ca(folder)
    server = server_cert(folder, "server", "IP:127.0.0.1, DNS:localhost")
    client = _sign(folder, "ca", "client", "mbackup test client",
                   "basicConstraints = CA:FALSE\n"
                   "keyUsage = digitalSignature\n"
                   "extendedKeyUsage = clientAuth\n")
    return Pki(folder / "ca.pem", *server, *client)
