"""Runs the cmlplan CLI, but sleeps right after printing a line that matches $CMLPLAN_FAULT_PAUSE_ON.

Fault tests kill it during that pause, so the kill lands at an exact step of an apply (the state
write for an action happens before its "complete" line is printed), or inject a fault and then
create the file $CMLPLAN_FAULT_RESUME_FILE to let it go on. The pause lasts at most 120 s and
happens once. Test-only: nothing in cmlplan knows about it.
"""

import os
import re
import sys
import time

from cmlplan.cli import progress
from cmlplan.cli.main import main

PATTERN = re.compile(os.environ["CMLPLAN_FAULT_PAUSE_ON"])
RESUME = os.environ.get("CMLPLAN_FAULT_RESUME_FILE")
PAUSE_SECONDS = 120.0
_line = progress.TextProgress._line
_paused = False


def _pausing_line(self: progress.TextProgress, text: str) -> None:
    global _paused
    _line(self, text)
    if not _paused and PATTERN.search(text):
        _paused = True
        self.stream.flush()
        deadline = time.monotonic() + PAUSE_SECONDS
        while time.monotonic() < deadline:  # the test SIGKILLs us here, or creates RESUME
            if RESUME and os.path.exists(RESUME):
                return
            time.sleep(0.05)


progress.TextProgress._line = _pausing_line  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "cmlplan"
    sys.exit(main())
