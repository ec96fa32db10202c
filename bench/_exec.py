"""``python -I -S bench/_exec.py FD -- ARGV...``: start ARGV in a fresh process and report its own figures.

Why: on Linux a child's peak RSS (``ru_maxrss``) is not its own when its parent is large. The kernel keeps
the high-water mark of the address space a process *leaves* at exec; a child started by vfork/posix_spawn
shares its parent's address space until that exec (and a forked one starts with a copy of it), so it
inherits the parent's peak: from a 313 MB benchmark runner, ``python -c pass`` "peaks" at 313 MB. This
launcher is a bare interpreter (``-I -S``, nothing imported beyond ``os``/``sys``/``signal``/``time``,
about 9 MB) started by the runner; ARGV is spawned from *it*, so the floor a measured child inherits is
this launcher's few MB, not the runner's peak. (The launcher's own rusage carries the runner's peak; it
is never used.)

Protocol on file descriptor FD (not inherited by ARGV), one ASCII line each:

* right after the spawn: ``pid <pid> <t0>``, `t0` = ``time.monotonic()`` just before it;
* after ARGV is reaped: ``exit <wait status> <utime> <stime> <maxrss KiB> <t1>`` from ``os.wait4`` of that
  pid alone (its own CPU and peak, its reaped children included as the kernel counts them);
* or, if it could not be started: ``error <message>`` (exit 127).

Signals are for ARGV, sent to its pid by the runner; this launcher ignores SIGINT (a Ctrl-C on the
terminal reaches ARGV itself) so that it is always there to reap ARGV and report.
"""

import os
import signal
import sys
import time


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = int(sys.argv[1])
    argv = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    os.set_inheritable(fd, False)
    t0 = time.monotonic()
    try:
        # The child starts with default signal dispositions (SIGINT included), whatever ours are.
        pid = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=(signal.SIGINT,))
    except OSError as exc:
        os.write(fd, f"error {argv[0]}: {exc}\n".encode())
        return 127
    os.write(fd, b"pid %d %r\n" % (pid, t0))
    while True:
        try:
            _, status, ru = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    t1 = time.monotonic()
    line = b"exit %d %r %r %d %r\n" % (status, ru.ru_utime, ru.ru_stime, ru.ru_maxrss, t1)
    try:
        os.write(fd, line)
    except OSError:  # the runner went away
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
