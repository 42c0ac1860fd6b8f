"""Drop TensorFlow's known-benign C++ start-up lines from this process's stderr; keep everything else.

TensorFlow 2.21 writes these through absl before Python logging exists, straight to file
descriptor 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says (measured: levels 2 and 3 both print them, and
level 3 would also hide real errors):

- ``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``
- ``I0000 ... port.cc:...] oneDNN custom operations are on. ...``
- ``I0000 ... cudart_stub.cc:...] Could not find cuda drivers on your machine, GPU will not be used.``
- ``E0000 ... cuda_platform.cc:...] failed call to cuInit: ...`` (dropped only when the machine has no
  NVIDIA device: with a GPU present, a failed cuInit is a real error)

So fd 2 is replaced by a pipe read by a small filter *process* that forwards every other byte to the
original stderr at once (partial lines too, so progress bars keep moving). A process rather than a
thread: when this process dies, even by a signal, the filter still drains the pipe and exits on EOF,
so no last words are lost. Child processes (Beam workers, DVC's stage commands) inherit the filtered
fd 2; the environment marker stops them from stacking a second filter on the same pipe.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

MARKER_ENV = "GDDSP_STDERR_FILTER"  # "<dev>:<inode>" of the filtered pipe; "off" disables the filter
BENIGN_PATTERNS = (
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rb"I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\.",
    rb"I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
)
NO_GPU_PATTERNS = (rb"E\d{4} [\d:.]+ +\d+ cuda_[a-z_]+\.cc:\d+\] failed call to cuInit",)

# The filter process: stdin is the pipe, stdout the original stderr. Whole lines are matched; a
# trailing fragment is held only while it could still become a benign line (they start with
# "WARNING: All" or an absl "I0000 "/"E0000 " prefix), else it is forwarded immediately.
_FILTER_SOURCE = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C stops the stage; the filter ends at EOF
signal.signal(signal.SIGTERM, signal.SIG_IGN)
benign = re.compile(b"^(?:" + b"|".join(p.encode("latin-1") for p in sys.argv[1:]) + b")")
absl_prefix = re.compile(rb"^[IE]\d{0,4}(?: |$)")
def maybe_benign(fragment):
    warning = b"WARNING: All log messages"
    return warning.startswith(fragment) or fragment.startswith(warning) or bool(absl_prefix.match(fragment))
held = b""
def out(data):
    while data:
        data = data[os.write(1, data):]
while True:
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    if not chunk:
        break
    held += chunk
    *lines, held = held.split(b"\n")
    try:
        out(b"".join(line + b"\n" for line in lines if not benign.match(line)))
        if held and not maybe_benign(held):
            out(held)
            held = b""
    except OSError:          # the terminal went away: keep draining so writers never block
        pass
if held and not benign.match(held):
    try:
        out(held)
    except OSError:
        pass
"""


def _has_nvidia_device() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def _fd2_id() -> str:
    st = os.fstat(2)
    return f"{st.st_dev}:{st.st_ino}"


def patterns() -> list[bytes]:
    """The benign-line patterns that apply on this machine."""
    return list(BENIGN_PATTERNS) + ([] if _has_nvidia_device() else list(NO_GPU_PATTERNS))


def filter_stderr() -> bool:
    """Route fd 2 through the filter process (once per pipe); True if this call installed it.

    Skipped when ``GDDSP_STDERR_FILTER=off``, when fd 2 is already the filtered pipe (a child of a
    filtered process), and under pytest, whose output capture owns fd 2 in its own process (the tests
    check the filter on real stage processes instead).
    """
    marker = os.environ.get(MARKER_ENV, "")
    if marker == "off" or "_pytest" in sys.modules:
        return False
    try:
        if marker and marker == _fd2_id():
            return False
        read_end, write_end = os.pipe()
        original = os.dup(2)
        process = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER_SOURCE,
                          *(p.decode("latin-1") for p in patterns())],
                         stdin=read_end, stdout=original, stderr=subprocess.DEVNULL, close_fds=True)
    except OSError:
        return False  # no fd 2 or no way to start a process: leave stderr as it is
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    os.environ[MARKER_ENV] = _fd2_id()
    atexit.register(_drain, process, original)
    return True


def _drain(process: subprocess.Popen, original: int) -> None:
    """At exit: hand fd 2 back and let the filter finish, so its last lines come before the shell's
    prompt. Children that still hold the pipe keep it alive; the wait is bounded."""
    try:
        sys.stderr.flush()
        os.dup2(original, 2)
        process.wait(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
