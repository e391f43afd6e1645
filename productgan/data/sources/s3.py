"""``s3://bucket/prefix``: product photos in S3 or any S3-compatible store (MinIO), keys laid out like a folder.

The endpoint comes from params ``ingest.s3_endpoint_url``, else ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``
(botocore reads those itself); region and credentials from the environment or the standard AWS config.
Throttling and 5xx answers are retried by botocore's "standard" retry mode (exponential backoff with jitter),
up to ``ingest.s3_max_attempts`` attempts per request in all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import BinaryIO

from productgan.data.safety import sanitize_source_name
from productgan.data.sources.base import IngestError, Listed, Plan, PlannedFile, Source, plan_photos
from productgan.redact import redact


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix ending in '/' or empty) of ``s3://bucket/prefix``."""
    if not uri.startswith("s3://"):
        raise IngestError(f"ingest: {redact(uri)!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise IngestError(f"ingest: {redact(uri)!r} names no bucket; use s3://bucket/prefix")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class S3Source(Source):
    kind = "s3"
    parallel_reads = True

    def __init__(self, uri: str, endpoint_url: str | None = None, max_attempts: int = 8, page_size: int | None = None):
        import boto3
        from botocore.config import Config

        if max_attempts < 1:
            raise IngestError(f"ingest: params ingest.s3_max_attempts is {max_attempts}; it must be 1 or more")
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.uri = redact(f"s3://{self.bucket}/{self.prefix}")  # recorded in manifest.json and shown
        last = self.prefix.rstrip("/").rsplit("/", 1)[-1] if self.prefix else self.bucket
        self.default_name = sanitize_source_name(last)
        self._root_category = last
        self._page_size = page_size
        # total_max_attempts counts the first try too (botocore's "max_attempts" key counts only retries),
        # so params ingest.s3_max_attempts means what its name says.
        config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts})
        self._client = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)

    def _error(self, what: str, exc: Exception) -> IngestError:
        endpoint = self._client.meta.endpoint_url
        return IngestError(redact(
            f"ingest: S3 {what} on {self.uri} (endpoint {endpoint}) failed: {exc}. Check the bucket and prefix, "
            "the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE), the region, and for "
            "MinIO the endpoint (params ingest.s3_endpoint_url or AWS_ENDPOINT_URL)"
        ))

    def _listing(self) -> Iterator[Listed]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self._client.get_paginator("list_objects_v2")
        pagination = {"PageSize": self._page_size} if self._page_size else {}
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, PaginationConfig=pagination):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/") and obj["Size"] == 0:
                        continue  # a "folder" marker some tools create; it holds no data
                    yield Listed(key[len(self.prefix) :], int(obj["Size"]), key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("listing", exc) from exc

    def plan(self) -> Plan:
        return plan_photos(list(self._listing()), root_category=self._root_category)

    @contextlib.contextmanager
    def open(self, f: PlannedFile) -> Iterator[BinaryIO]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=f.ref)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"download of {f.ref!r}", exc) from exc
        body = resp["Body"]  # botocore StreamingBody: read(n) streams; retries cover the request, not the stream
        try:
            yield body
        finally:
            body.close()

    def close(self) -> None:
        self._client.close()
