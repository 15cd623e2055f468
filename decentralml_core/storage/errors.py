"""Storage failures a caller can act on; every message names the file, reference or limit involved."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage error."""


class IntegrityError(StorageError):
    """Bytes did not match the content identifier they were fetched by: refused, never used."""


class BadManifest(IntegrityError):
    """The content is there and verified, but is not a folder manifest this agent accepts."""


class UnsafeName(StorageError):
    """A path from a manifest, the chain or a folder that could escape the work dir (or is a link)."""


class TooLarge(StorageError):
    """Over a configured size or count limit."""


class NotFound(StorageError):
    """No store reachable from here has this content."""


class Unreachable(StorageError):
    """A store could not be reached, stopped answering or asked us to slow down: it may work later."""


class UnsupportedStorage(StorageError):
    """A storage type (from the chain) this agent cannot use."""
