"""Ingest sources: one module per kind (fashion-mnist, folder, archive, s3), chosen from the source string."""

from __future__ import annotations

import os

from productgan.data.sources.base import IngestError, Source


def open_source(
    spec: str, s3_endpoint_url: str | None = None, s3_max_attempts: int = 8, s3_page_size: int | None = None
) -> Source:
    """The source that ``spec`` names: ``fashion-mnist[:DIR]``, ``s3://bucket/prefix``, an archive, or a folder."""
    if spec == "fashion-mnist" or spec.startswith("fashion-mnist:"):
        from productgan.data.sources.fashion_mnist import FashionMNISTSource

        _, _, directory = spec.partition(":")
        return FashionMNISTSource(directory or None)
    if spec.startswith("s3://"):
        from productgan.data.sources.s3 import S3Source

        return S3Source(spec, endpoint_url=s3_endpoint_url, max_attempts=s3_max_attempts, page_size=s3_page_size)
    from productgan.data.sources.archive import ArchiveSource, is_archive_path
    from productgan.data.sources.folder import FolderSource

    if os.path.isdir(spec):
        return FolderSource(spec)
    if os.path.isfile(spec) and is_archive_path(spec):
        return ArchiveSource(spec)
    if os.path.isfile(spec):
        raise IngestError(
            f"ingest: {spec} is a file but not an archive ingest reads (.zip, .tar, .tar.gz, .tgz, .tar.bz2, "
            ".tar.xz); pass a folder, an archive, s3://bucket/prefix or fashion-mnist"
        )
    raise IngestError(
        f"ingest: source {spec!r} not found; pass fashion-mnist[:DIR], a folder, an archive (.zip, .tar, .tar.gz, "
        ".tgz) or s3://bucket/prefix"
    )


__all__ = ["IngestError", "Source", "open_source"]
