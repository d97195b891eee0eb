"""Setting a pod's demo app fault (``meshctl lab fail|delay``): a control request to the app's HTTP port over the
pod's own loopback, which mesh-init leaves unintercepted, so it reaches the app whatever its proxy does."""

from __future__ import annotations

from typing import Final

import trio

from ctl.lab.app_faults import CONTROL_PREFIX, parse_delay_ms, parse_fail_mode
from ctl.lab.command import LabError
from ctl.lab.talk import http_exchange
from ctl.lab.topology import HTTP_PORT

CONTROL_TIMEOUT: Final = 5.0  # seconds; the app answers a control request at once, whatever its fault


async def set_fail(netns: str, mode: str) -> str:
    """``off``, ``reset``, ``hang`` or an error status (``503``); the fault the app reports. ValueError: bad mode."""
    parse_fail_mode(mode)
    return await _control(netns, f"{CONTROL_PREFIX}fail?mode={mode}")


async def set_delay(netns: str, ms: int) -> str:
    """Every later answer of the app waits ``ms`` milliseconds first (0: none); the fault the app reports."""
    parse_delay_ms(str(ms))
    return await _control(netns, f"{CONTROL_PREFIX}delay?ms={ms}")


async def _control(netns: str, path: str) -> str:
    try:
        with trio.fail_after(CONTROL_TIMEOUT):
            ((status, body),) = await http_exchange(netns, "127.0.0.1", HTTP_PORT, [("POST", path)])
    except (OSError, EOFError, ValueError, trio.TooSlowError) as exc:
        raise LabError(f"the demo app in {netns} did not take POST {path}: {type(exc).__name__}: {exc}") from None
    if status.split(" ")[1:2] != ["200"]:
        raise LabError(f"the demo app in {netns} refused POST {path}: {status}: {body}")
    return body
