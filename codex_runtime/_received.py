"""What the loopback test servers share: looking up the headers a request arrived with."""

from __future__ import annotations

__all__ = ["ReceivedHeaders"]


class ReceivedHeaders:
    """Header lookups over ``header_pairs`` (lower-case names, in arrival order)."""

    __slots__ = ()
    header_pairs: tuple[tuple[str, str], ...]

    @property
    def headers(self) -> dict[str, str]:
        """Headers with lower-case names (the last value of a repeated name)."""
        return dict(self.header_pairs)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.header_pairs:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value received for header ``name``."""
        name = name.lower()
        return [v for k, v in self.header_pairs if k == name]
