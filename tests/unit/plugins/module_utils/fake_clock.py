# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A stand-in for the ``time`` module of code that waits: each look at the clock is 0.12345 s
later than the one before, and sleeping is free (the sleeps asked for are recorded)."""
from __future__ import annotations


class FakeClock:
    """``monotonic()`` advances 0.12345 s per call from 100.0; ``sleep()`` only records."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def monotonic(self):
        self.now += 0.12345
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
