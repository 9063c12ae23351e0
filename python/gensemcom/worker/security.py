"""CURVE keys and the loopback rule of the inference worker.

Workers and brokers bind to ``127.0.0.1`` by default. Binding to any other
address requires ZeroMQ CURVE (encryption plus client authentication by public
key); :func:`check_bind` refuses to start otherwise.

One key directory, made by ``python -m gensemcom.worker keygen DIR``, holds::

    DIR/server.key            server public key   (clients and workers need it)
    DIR/server.key_secret     server key pair     (worker/broker host only)
    DIR/client.key            client public key
    DIR/client.key_secret     client key pair     (clients and broker-connected workers)
    DIR/authorized_clients/   public keys the server accepts (client.key to start with)

Copy the directory to each host (or only the files that host needs). To admit
another client, generate its pair with ``keygen`` elsewhere and drop its
``.key`` into ``authorized_clients/``.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path
from typing import Dict, Optional, Union

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

PathLike = Union[str, os.PathLike]
AUTHORIZED_DIR = "authorized_clients"


class SecurityError(RuntimeError):
    """A bind or key configuration that would be unsafe or cannot work."""


def is_loopback(endpoint: str) -> bool:
    """Tell whether a ZeroMQ endpoint only accepts local peers.

    Args:
        endpoint: e.g. ``tcp://127.0.0.1:5555``, ``tcp://*:5555``, ``ipc:///tmp/x``.

    Returns:
        True for ``ipc://``, ``inproc://`` and TCP on 127.0.0.0/8, ``::1`` or
        ``localhost``; False for wildcards, interface names and other addresses.
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", "0.0.0.0" is an address; interface names land here
        return False


def check_bind(endpoint: str, keys_dir: Optional[PathLike]) -> None:
    """Refuse a non-loopback bind without CURVE keys.

    Args:
        endpoint: The endpoint to bind.
        keys_dir: The CURVE key directory, or None.

    Raises:
        SecurityError: If ``endpoint`` is reachable from other hosts and no
            keys are configured.
    """
    if keys_dir is None and not is_loopback(endpoint):
        raise SecurityError(
            f"refusing to bind {endpoint} without CURVE keys: only loopback binds are allowed "
            f"in the clear. Create keys with 'python -m gensemcom.worker keygen DIR' and pass "
            f"--curve-keys DIR")


def keygen(keys_dir: PathLike, force: bool = False) -> Dict[str, str]:
    """Create a server and a client CURVE key pair in ``keys_dir``.

    Args:
        keys_dir: Directory to create (or fill).
        force: Overwrite existing keys.

    Returns:
        Paths of the files written, by role.

    Raises:
        SecurityError: If keys already exist and ``force`` is False.
    """
    d = Path(keys_dir)
    if (d / "server.key_secret").exists() and not force:
        raise SecurityError(f"{d} already holds keys (use --force to replace them)")
    d.mkdir(parents=True, exist_ok=True)
    server_pub, server_sec = zmq.auth.create_certificates(d, "server")
    client_pub, client_sec = zmq.auth.create_certificates(d, "client")
    auth = d / AUTHORIZED_DIR
    auth.mkdir(exist_ok=True)
    shutil.copy(client_pub, auth / "client.key")
    for secret in (server_sec, client_sec):
        os.chmod(secret, 0o600)
    return {"server_public": server_pub, "server_secret": server_sec, "client_public": client_pub,
            "client_secret": client_sec, "authorized_clients": str(auth)}


class CurveKeys:
    """The key material found in a key directory.

    Args:
        keys_dir: The directory made by :func:`keygen`.
    """

    def __init__(self, keys_dir: PathLike):
        self.keys_dir = Path(keys_dir)
        if not self.keys_dir.is_dir():
            raise SecurityError(f"CURVE key directory {self.keys_dir} does not exist")

    def _load(self, name: str, secret: bool):
        path = self.keys_dir / (name + (".key_secret" if secret else ".key"))
        if not path.exists():
            raise SecurityError(f"missing CURVE key file {path}")
        return zmq.auth.load_certificate(path)

    def apply_server(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server with the server key pair."""
        public, secret = self._load("server", True)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True

    def apply_client(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client with the client key pair and the server public key."""
        public, secret = self._load("client", True)
        server_public, _ = self._load("server", False)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_serverkey = server_public

    def start_authenticator(self, context: zmq.Context) -> ThreadAuthenticator:
        """Start a ZAP authenticator on ``context`` accepting the authorized client keys.

        Args:
            context: The context whose CURVE server sockets it guards.

        Returns:
            The running authenticator (call ``stop()`` when done).
        """
        auth_dir = self.keys_dir / AUTHORIZED_DIR
        if not auth_dir.is_dir():
            raise SecurityError(f"missing {auth_dir} (public keys of the clients to accept)")
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain="*", location=str(auth_dir))
        return auth
