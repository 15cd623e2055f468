"""Substrate's hashers and storage keys: twox for prefixes, blake2 for maps and block hashes."""

from __future__ import annotations

import hashlib

import xxhash


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def blake2_128(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def twox_64(data: bytes) -> bytes:
    return xxhash.xxh64_digest(data, seed=0)[::-1]


def twox_128(data: bytes) -> bytes:
    return twox_64_seed(data, 0) + twox_64_seed(data, 1)


def twox_64_seed(data: bytes, seed: int) -> bytes:
    return xxhash.xxh64_intdigest(data, seed=seed).to_bytes(8, "little")


def hash_key(hasher: str, encoded_key: bytes) -> bytes:
    """The hashed form of one map key, as a node lays it out in its key-value state."""
    if hasher == "Blake2_128Concat":
        return blake2_128(encoded_key) + encoded_key
    if hasher == "Twox64Concat":
        return twox_64_seed(encoded_key, 0) + encoded_key
    if hasher == "Identity":
        return encoded_key
    if hasher == "Blake2_128":
        return blake2_128(encoded_key)
    if hasher == "Blake2_256":
        return blake2_256(encoded_key)
    if hasher == "Twox128":
        return twox_128(encoded_key)
    raise ValueError(f"unknown hasher {hasher}")


def storage_prefix(pallet: str, item: str) -> bytes:
    return twox_128(pallet.encode()) + twox_128(item.encode())
