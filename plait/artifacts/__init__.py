"""Artifacts: named data a step keeps with its run, small in the database, large in a blob store."""

from plait.artifacts.blobs import BlobStore, FileBlobStore, FsspecBlobStore, open_blob_store
from plait.artifacts.model import Artifact
from plait.artifacts.step import StepArtifacts
from plait.artifacts.storage import INLINE_LIMIT, ArtifactStorage

__all__ = [
    "INLINE_LIMIT",
    "Artifact",
    "ArtifactStorage",
    "BlobStore",
    "FileBlobStore",
    "FsspecBlobStore",
    "StepArtifacts",
    "open_blob_store",
]
