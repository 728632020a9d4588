"""Binance diff-depth sync (LIVE.md 1.4): `DepthChain` holds the update-id rules as pure
decisions with no I/O, so a live feed can share them; the book itself is `importers.book`."""

from __future__ import annotations

from enum import IntEnum


class Verdict(IntEnum):
    """What to do with one diff-depth message."""

    APPLY = 0
    DISCARD = 1  # u <= the snapshot's lastUpdateId: already in the snapshot
    STALE = 2  # u <= the book's id after sync: a duplicate or late message
    GAP = 3  # the update-id chain is broken: the book can no longer be trusted


class DepthChain:
    """Update-id bookkeeping of one local book, started from a snapshot's lastUpdateId.

    Before sync, diffs with u <= lastUpdateId are discarded and the first one applied must
    satisfy U <= lastUpdateId + 1 <= u. After it, spot diffs must continue with
    U == previous u + 1 and futures diffs with pu == previous u.
    """

    __slots__ = ("book_id", "futures", "snapshot_id", "synced")

    def __init__(self, last_update_id: int, *, futures: bool) -> None:
        self.snapshot_id = last_update_id
        self.book_id = last_update_id
        self.futures = futures
        self.synced = False

    def admit(self, first_id: int, last_id: int, prev_id: int | None) -> Verdict:
        """Judge one diff (U, u, pu); on APPLY the book id moves to u."""
        if last_id <= self.book_id:
            return Verdict.STALE if self.synced else Verdict.DISCARD
        if not self.synced:
            ok = first_id <= self.book_id + 1
        elif self.futures:
            ok = prev_id == self.book_id
        else:
            ok = first_id == self.book_id + 1
        if not ok:
            return Verdict.GAP
        self.book_id = last_id
        self.synced = True
        return Verdict.APPLY

    def gap_text(self, first_id: int, last_id: int, prev_id: int | None) -> str:
        """Why `admit` answered GAP for this diff: expected and found ids."""
        if not self.synced:
            return (
                f"update-id gap after the snapshot: the first diff must satisfy "
                f"U <= lastUpdateId+1 <= u; expected U <= {self.book_id + 1}, "
                f"found U={first_id} (u={last_id})"
            )
        if self.futures:
            return (
                f"update-id gap: expected pu={self.book_id} (the previous u), "
                f"found pu={prev_id} (U={first_id}, u={last_id})"
            )
        return (
            f"update-id gap: expected U={self.book_id + 1} (the previous u + 1), "
            f"found U={first_id} (u={last_id})"
        )
