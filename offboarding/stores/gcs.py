"""Google Cloud Storage behind the `ObjectStore` interface, and V4 signed download links.

`gs://bucket/prefix` names a store; keys are relative to the prefix. Uploads stream from disk
(resumable above `_RESUMABLE_CHUNK`) and carry the CRC32C the client computed, so the server
refuses an object whose bytes do not match; the SHA-256 goes into the object's metadata so
listings can report it without reading the object again. Reads can pin a generation: the
export reads files exactly as the inventory saw them.

Credentials come from Application Default Credentials (a service-account key file, or workload
identity); with `STORAGE_EMULATOR_HOST` set the client talks to that emulator anonymously.
Checked only against an emulator here (see docs/delivery.md): preconditions such as
`if_generation_match=0`, server-side checksum enforcement, generations, holds and retention.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import google_crc32c

from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.stores.base import (
    HashingWriter,
    ObjectInfo,
    check_key,
    check_prefix,
    require_under,
)

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Bucket, Client

__all__ = ["MAX_SIGNED_URL_LIFETIME_SECONDS", "GcsLinkSigner", "GcsStore"]

_RESUMABLE_CHUNK = 8 * 1024 * 1024  # multiple of 256 KiB, as resumable uploads require
_READ_CHUNK = 1024 * 1024
# A V4 signed URL lives at most seven days (Cloud Storage refuses longer ones).
MAX_SIGNED_URL_LIFETIME_SECONDS = 7 * 24 * 3600
_SHA256_METADATA = "sha256"


def _digests(path: Path) -> tuple[str, str]:
    """(sha256 hex, crc32c base64) of a file in one pass."""
    sha = hashlib.sha256()
    crc = google_crc32c.Checksum()
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            sha.update(chunk)
            crc.update(chunk)
    return sha.hexdigest(), base64.b64encode(crc.digest()).decode()


def _client() -> Client:
    from google.cloud import storage

    return storage.Client()


class GcsStore:
    """One bucket (and optional prefix) as an object store."""

    def __init__(self, url: str, *, write_once: bool = False, client: Client | None = None):
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        if not bucket:
            raise ConfigurationError(f"{url!r} names no bucket: use gs://bucket/optional/prefix")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"gs://{bucket}/{self.prefix}".rstrip("/")
        self.write_once = write_once
        self._client = client
        self._bucket_name = bucket

    @property
    def bucket(self) -> Bucket:
        if self._client is None:
            self._client = _client()
        return self._client.bucket(self._bucket_name)

    def _blob(self, key: str, generation: int | None = None) -> Blob:
        return self.bucket.blob(self.prefix + check_key(key), generation=generation)

    def _info(self, blob: Blob) -> ObjectInfo:
        metadata = blob.metadata or {}
        sha256 = metadata.get(_SHA256_METADATA) or self._sha256_of(blob)
        return ObjectInfo(
            key=str(blob.name).removeprefix(self.prefix),
            size=int(blob.size or 0),
            sha256=sha256,
            generation=blob.generation,
        )

    def _sha256_of(self, blob: Blob) -> str:
        """Objects written by others carry no SHA-256: read them once, at the listed generation."""
        digest = hashlib.sha256()
        with self.bucket.blob(blob.name, generation=blob.generation).open("rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def _list(self, prefix: str, **options: Any) -> Iterator[Blob]:
        from google.api_core.exceptions import NotFound

        full = self.prefix + check_prefix(prefix)
        try:
            yield from self.bucket.client.list_blobs(self.bucket, prefix=full, **options)
        except NotFound as error:
            raise ConfigurationError(
                f"bucket {self._bucket_name!r} of {self.url} does not exist or this service "
                "account cannot list it: check the store URLs in the settings"
            ) from error

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        for blob in self._list(prefix):
            yield self._info(blob)

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every generation under the prefix, live and noncurrent (versioned buckets)."""
        for blob in self._list(prefix, versions=True):
            yield ObjectInfo(
                key=str(blob.name).removeprefix(self.prefix),
                size=int(blob.size or 0),
                sha256=(blob.metadata or {}).get(_SHA256_METADATA, ""),
                generation=blob.generation,
            )

    def delete_every_generation(self, prefix: str) -> tuple[int, int]:
        """Delete the live and every noncurrent generation under the prefix; return (objects,
        bytes) deleted. Soft-deleted copies cannot be removed early: see `soft_deleted`."""
        from google.api_core.exceptions import NotFound

        count = size = 0
        listed = list(self._list(prefix, versions=True))
        require_under(prefix, (str(b.name).removeprefix(self.prefix) for b in listed))
        for blob in listed:
            try:
                self.bucket.blob(blob.name, generation=blob.generation).delete()
            except NotFound:
                continue  # gone meanwhile (a rerun, or a concurrent delete)
            count += 1
            size += int(blob.size or 0)
        return count, size

    def delete_key_generations(self, key: str) -> tuple[int, int]:
        """Delete the live and every noncurrent generation of exactly this key (not the keys it
        is a prefix of); return (generations, bytes) deleted."""
        from google.api_core.exceptions import NotFound

        count = size = 0
        name = self.prefix + check_key(key)
        listed = self.bucket.client.list_blobs(self.bucket, prefix=name, versions=True)
        for blob in [b for b in listed if b.name == name]:
            try:
                self.bucket.blob(blob.name, generation=blob.generation).delete()
            except NotFound:
                continue
            count += 1
            size += int(blob.size or 0)
        return count, size

    def soft_deleted(self, prefix: str) -> list[datetime]:
        """When each soft-deleted copy under the prefix is deleted for good."""
        return [
            blob.hard_delete_time
            for blob in self._list(prefix, soft_deleted=True)
            if blob.hard_delete_time is not None
        ]

    def exists(self, key: str) -> bool:
        return bool(self._blob(key).exists())

    def open_read(self, key: str, generation: int | None = None) -> BinaryIO:
        return cast(BinaryIO, self._blob(key, generation).open("rb"))

    def _upload(self, key: str, source: Path | bytes) -> ObjectInfo:
        if isinstance(source, Path):
            sha256, crc32c = _digests(source)
            size = source.stat().st_size
        else:
            sha256 = hashlib.sha256(source).hexdigest()
            crc32c = base64.b64encode(google_crc32c.Checksum(source).digest()).decode()
            size = len(source)
        blob = self.bucket.blob(self.prefix + check_key(key), chunk_size=_RESUMABLE_CHUNK)
        blob.metadata = {_SHA256_METADATA: sha256}
        blob.crc32c = crc32c  # sent with the upload: the server rejects bytes that differ
        # Write-once stores never replace an object: the upload is conditional on absence.
        condition: dict[str, Any] = {"if_generation_match": 0} if self.write_once else {}
        from google.api_core.exceptions import PreconditionFailed

        try:
            if isinstance(source, Path):
                blob.upload_from_filename(str(source), checksum="crc32c", **condition)
            else:
                blob.upload_from_string(source, checksum="crc32c", **condition)
        except PreconditionFailed as error:
            raise IntegrityError(f"{self.url}: {key} already exists and is write-once") from error
        if blob.crc32c != crc32c:
            raise IntegrityError(f"{self.url}: {key} stored with a different checksum; retry")
        return ObjectInfo(key=key, size=size, sha256=sha256, generation=blob.generation)

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        return self._upload(key, source)

    def write_stream(self, key: str, fill: Callable[[HashingWriter], None]) -> ObjectInfo:
        """A resumable upload fed as `fill` writes, in chunks of `_RESUMABLE_CHUNK` (memory
        bounded by that, whatever the object's size). The CRC32C of what was written is then
        compared with the server's, and the SHA-256 recorded in the object's metadata. A
        `fill` that fails leaves no object behind."""
        from google.api_core.exceptions import NotFound

        blob = self.bucket.blob(self.prefix + check_key(key), chunk_size=_RESUMABLE_CHUNK)
        condition: dict[str, Any] = {"if_generation_match": 0} if self.write_once else {}
        crc = google_crc32c.Checksum()
        upload = blob.open("wb", chunk_size=_RESUMABLE_CHUNK, ignore_flush=True, **condition)
        writer = HashingWriter(upload, crc)
        try:
            fill(writer)
            upload.close()
        except BaseException:
            with contextlib.suppress(Exception):
                upload.close()  # end the session now, not whenever it is collected
            with contextlib.suppress(NotFound):
                blob.delete()
            raise
        blob.reload()
        if blob.crc32c != base64.b64encode(crc.digest()).decode():
            with contextlib.suppress(NotFound):
                blob.delete()
            raise IntegrityError(f"{self.url}: {key} stored with a different checksum; retry")
        blob.metadata = {_SHA256_METADATA: writer.sha256}
        blob.patch()
        return ObjectInfo(
            key=key, size=writer.size, sha256=writer.sha256, generation=blob.generation
        )

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self._upload(key, data)

    def delete(self, key: str) -> bool:
        from google.api_core.exceptions import NotFound

        if self.write_once:
            raise IntegrityError(f"{self.url} is write-once: {key} cannot be deleted")
        try:
            self._blob(key).delete()
        except NotFound:
            return False
        return True

    def signed_url(
        self, key: str, *, filename: str, expires_at: datetime, signer: GcsLinkSigner
    ) -> str:
        return signer.sign(self._blob(key), filename=filename, expires_at=expires_at)


class GcsLinkSigner:
    """V4 signed GET URLs, signed with a service-account key file, or under workload identity
    through IAM signBlob (the service account's e-mail and an access token)."""

    def __init__(self, key_file: Path | None = None, service_account_email: str = "") -> None:
        self.key_file = key_file
        self.service_account_email = service_account_email

    def _signing_arguments(self) -> dict[str, Any]:
        if self.key_file is not None:
            from google.oauth2 import service_account

            try:
                info = json.loads(self.key_file.read_text())
                credentials = service_account.Credentials.from_service_account_info(info)
            except (OSError, ValueError, KeyError) as error:
                raise ConfigurationError(
                    f"OFFBOARD_GCS_SIGNING_KEY_FILE={self.key_file}: not a readable "
                    f"service-account key ({error})"
                ) from error
            return {"credentials": credentials}
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())
        email = self.service_account_email or getattr(credentials, "service_account_email", "")
        if not email or email == "default":
            raise ConfigurationError(
                "signing download links under workload identity needs the service account's "
                "e-mail: set OFFBOARD_GCS_SIGNING_EMAIL (the account needs "
                "roles/iam.serviceAccountTokenCreator on itself)"
            )
        return {"service_account_email": email, "access_token": credentials.token}

    def sign(self, blob: Blob, *, filename: str, expires_at: datetime) -> str:
        from datetime import UTC

        lifetime = (expires_at - datetime.now(UTC)).total_seconds()
        if lifetime > MAX_SIGNED_URL_LIFETIME_SECONDS:
            raise ConfigurationError(
                "a Cloud Storage link lives at most 7 days: set OFFBOARD_LINK_LIFETIME to 7 days "
                "or less (expired links are re-issued while the case waits)"
            )
        safe_name = filename.replace('"', "").replace("\\", "")
        return str(
            blob.generate_signed_url(
                version="v4",
                expiration=expires_at,
                method="GET",
                response_disposition=f'attachment; filename="{safe_name}"',
                **self._signing_arguments(),
            )
        )
