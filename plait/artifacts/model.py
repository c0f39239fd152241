"""What users read about an artifact."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from plait.store.base import ArtifactRow


class Artifact(BaseModel):
    """One artifact of a run: its key, size in bytes, content type, the step that put it and when."""

    key: str
    size: int
    content_type: str
    step_id: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: ArtifactRow) -> Artifact:
        return cls(
            key=row.key,
            size=row.size,
            content_type=row.content_type,
            step_id=row.step_id,
            created_at=datetime.fromtimestamp(row.created_at, UTC),
        )
