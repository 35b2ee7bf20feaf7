"""The skip mark for tests that need the real sandbox (bubblewrap) on this machine."""

import pytest

from engine import sandbox


def _bwrap_ok() -> bool:
    try:
        sandbox.check_available("bwrap")
    except sandbox.SandboxUnavailable:
        return False
    return True


needs_bwrap = pytest.mark.skipif(not _bwrap_ok(), reason="bubblewrap cannot run here (apt-get install bubblewrap)")
