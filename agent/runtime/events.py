"""Where a program reports a problem on an object, as a narrow interface: Kubernetes Events in
production (`agent.kube.events.EventRecorder`), and an in-memory fake beside it for tests of the
code that decides to post them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class EventSink(Protocol):
    """Where a program reports a problem on an object (Kubernetes Events in production)."""

    def warn(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None: ...


@dataclass
class RecordedEvents:
    """The fake: keeps (namespace/name, uid, reason, message) of every warning, posts nothing."""

    warnings: list[tuple[str, str, str, str]] = field(default_factory=list)

    def warn(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        self.warnings.append((f"{namespace}/{name}", uid, reason, message))

    def reasons(self, reason: str) -> list[str]:
        """The objects (namespace/name) warned about with `reason`, in order."""
        return [key for key, _, r, _ in self.warnings if r == reason]
