"""A `credentials.signer` hook as a KMS client would be one: it signs with a key Montage never reads (here a PEM file
named by MONTAGE_TEST_SIGNING_KEY, standing in for the key service)."""
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def sign(data: bytes) -> bytes:
    key = serialization.load_pem_private_key(Path(os.environ["MONTAGE_TEST_SIGNING_KEY"]).read_bytes(), None)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))
