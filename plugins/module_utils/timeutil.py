# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Timestamps of the library: UTC, ISO 8601, millisecond precision, 'Z' suffix."""
from __future__ import annotations

import datetime


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts: datetime.datetime | None = None) -> str:
    ts = ts or utcnow()
    return ts.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime.datetime:
    """Parse a timestamp written by ``iso`` (or any ISO 8601 form with an offset or 'Z')."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    ts = datetime.datetime.fromisoformat(text)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.timezone.utc)
    return ts
