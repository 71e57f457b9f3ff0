"""The signing certificate chain: the configured one (`credentials.cert`, `credentials.key`), or a development chain
(a root CA and a signing certificate it issued: C2PA refuses a self-signed end-entity certificate) generated once
under the data folder."""
from __future__ import annotations

import datetime
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.composition import CredentialsArgs
from config.settings import Settings

log = logging.getLogger(__name__)
CHAIN_FILE, KEY_FILE, ROOT_FILE = "chain.pem", "signer.key", "root.pem"
DEV_DAYS = 825


@dataclass(frozen=True)
class Chain:
    """PEM bytes: the signing certificate then its issuers, its key, and the root that validation trusts."""

    certs: bytes
    key: bytes | None  # None: a signing hook holds it (`credentials.signer`)
    anchors: bytes


def load_chain(args: CredentialsArgs, folder: Path | None = None) -> Chain:
    """The configured chain (its last certificate is the trust anchor), else the development chain in `folder`
    (default: MONTAGE_DATA_DIR/credentials), generated there on first use."""
    if args.cert is not None:
        certs = args.cert.read_bytes()
        root = x509.load_pem_x509_certificates(certs)[-1]
        key = args.key.read_bytes() if args.key is not None else None
        return Chain(certs, key, root.public_bytes(serialization.Encoding.PEM))
    folder = folder or dev_folder()
    if not (folder / CHAIN_FILE).is_file():
        _generate(folder)
    return Chain(*((folder / name).read_bytes() for name in (CHAIN_FILE, KEY_FILE, ROOT_FILE)))


def signing_hook(path: str | None) -> Callable[[bytes], bytes] | None:
    """The `credentials.signer` hook ('module:function'), imported; a ValueError naming the field if it is not there."""
    if path is None:
        return None
    module, _, name = path.partition(":")
    try:
        hook = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"credentials.signer: cannot import {path} ({exc})") from exc
    if not callable(hook):
        raise ValueError(f"credentials.signer: {path} is not a function")
    return hook


def dev_folder() -> Path:
    """Where the development chain lives: MONTAGE_DATA_DIR/credentials, a relative data folder taken from the
    project's root (as the asset folder is), so `montage up` and every replica find the same chain."""
    folder = Settings().data_dir / "credentials"
    return folder if folder.is_absolute() else Path(__file__).resolve().parents[2] / folder


def _generate(folder: Path) -> None:
    """Writes a development chain into `folder` at once (a process that lost the race keeps the winner's)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".credentials-"))
    root_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = _name("Montage development root CA")
    root = _certificate(root_name, root_name, root_key.public_key(), root_key, ca=True)
    signer = _certificate(_name("Montage development signer"), root_name, signer_key.public_key(), root_key, ca=False)
    pem = serialization.Encoding.PEM
    (staging / CHAIN_FILE).write_bytes(signer.public_bytes(pem) + root.public_bytes(pem))
    (staging / ROOT_FILE).write_bytes(root.public_bytes(pem))
    (staging / KEY_FILE).write_bytes(signer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    os.chmod(staging / KEY_FILE, 0o600)
    try:
        os.rename(staging, folder)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
        return
    log.warning("content credentials: generated a development signing chain in %s (not trusted by anyone else; set "
                "composition.credentials.cert and .key for production)", folder)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Montage development")])


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=DEV_DAYS * (2 if ca else 1)))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if not ca:
        builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
    return builder.sign(issuer_key, hashes.SHA256())
