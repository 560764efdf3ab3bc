"""Spawning plugins the way a runtime does, with as little harness overhead as possible.

Every column (rcni, go, floor) is spawned by the same function: os.posix_spawn
(glibc: clone(CLONE_VM|CLONE_VFORK) + execve) and os.wait4, timed with
time.perf_counter_ns around exactly those two calls. stdin is a pipe pre-filled
with the config and closed (the plugin reads it to EOF, as from a runtime);
stdout/stderr are memfds, so no reader thread and no pipe-full deadlock.

Peak RSS: wait4's ru_maxrss cannot be used for a process spawned by Python,
because the kernel records the hiwater RSS of the mm the child had before
execve -- Python's (~13 MB) -- into the child's maxrss. GNU time forks from a
~1 MB process, so `/usr/bin/time -f %M -o FILE plugin` gives the plugin's peak
(floor: ~1 MB for /bin/true, reported alongside). Those runs are extra, never
timed.
"""

from __future__ import annotations

import fcntl
import os
import time

PIPE_MAX = 1 << 20


def _memfd(name: str) -> int:
    return os.memfd_create(name, os.MFD_CLOEXEC)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def spawn(argv: list, env: dict, stdin: bytes):
    """Spawn argv[0] with env and stdin; return (ns, status, stdout, stderr).

    status is the exit code, or -signo when killed by a signal.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    out = _memfd("rcni-bench-out")
    err = _memfd("rcni-bench-err")
    try:
        if len(stdin) > 60000:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, max(PIPE_MAX, len(stdin) + 4096))
        if stdin:
            view = memoryview(stdin)
            while view:
                n = os.write(w, view)
                view = view[n:]
        os.close(w)
        w = -1
        fa = [
            (os.POSIX_SPAWN_DUP2, r, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, err, 2),
        ]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=fa)
        try:
            _, wstatus, _ru = os.wait4(pid, 0)
        except BaseException:
            # Ctrl-C / SIGTERM: let the plugin finish before the untimed teardown undoes its work.
            os.waitpid(pid, 0)
            raise
        t1 = time.perf_counter_ns()
        status = os.waitstatus_to_exitcode(wstatus)
        return t1 - t0, status, _read_all(out), _read_all(err)
    finally:
        for fd in (r, w, out, err):
            if fd >= 0:
                os.close(fd)


def spawn_many(children: list):
    """Spawn every (argv, env, stdin) of `children` back to back, then reap them all.

    Returns (ns from before the first spawn to after the last exit, [(status, stdout, stderr)]
    in the order given). Every stdin pipe is filled before the first spawn, so the children
    start as close together as one thread can start them (~0.1 ms apart).
    """
    fds, pids = [], []
    try:
        prepared = []
        for argv, env, stdin in children:
            r, w = os.pipe2(os.O_CLOEXEC)
            out, err = _memfd("rcni-bench-out"), _memfd("rcni-bench-err")
            fds.append([r, w, out, err])
            if len(stdin) > 60000:
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, max(PIPE_MAX, len(stdin) + 4096))
            view = memoryview(stdin)
            while view:
                n = os.write(w, view)
                view = view[n:]
            os.close(w)
            fds[-1][1] = -1
            prepared.append((argv, env, [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                                         (os.POSIX_SPAWN_DUP2, err, 2)]))
        t0 = time.perf_counter_ns()
        for argv, env, fa in prepared:
            pids.append(os.posix_spawn(argv[0], argv, env, file_actions=fa))
        # In spawn order, not wait4(-1): that could reap other children of the harness
        # (a scenario's helper processes). The last wait returns after the last exit.
        statuses = []
        while pids:
            _, wstatus, _ru = os.wait4(pids[0], 0)
            statuses.append(os.waitstatus_to_exitcode(wstatus))
            pids.pop(0)
        t1 = time.perf_counter_ns()
        res = [(st, _read_all(f[2]), _read_all(f[3])) for st, f in zip(statuses, fds)]
        return t1 - t0, res
    finally:
        for pid in pids:  # interrupted: do not leave zombies behind
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for f in fds:
            for fd in f:
                if fd >= 0:
                    os.close(fd)


GNU_TIME = "/usr/bin/time"


def have_gnu_time() -> bool:
    if not os.access(GNU_TIME, os.X_OK):
        return False
    try:
        _, st, out, err = spawn([GNU_TIME, "-f", "%M", "/bin/true"], {"PATH": "/usr/bin:/bin"}, b"")
        return st == 0 and err.strip().isdigit()
    except OSError:
        return False


def read_rss(tmpfile: str):
    """The %M figure GNU time wrote to `tmpfile` (KB), or None."""
    rss = None
    try:
        with open(tmpfile) as f:
            for line in f:
                line = line.strip()
                if line.isdigit():
                    rss = int(line)
    except OSError:
        pass
    return rss


def spawn_rss(argv: list, env: dict, stdin: bytes, tmpfile: str):
    """Like spawn(), under GNU time; returns (status, stdout, stderr, maxrss_kb)."""
    targv = [GNU_TIME, "-f", "%M", "-o", tmpfile] + argv
    _, status, out, err = spawn(targv, env, stdin)
    rss = read_rss(tmpfile)
    # GNU time prints "Command exited with non-zero status N" before the figure; the
    # exit status of time itself is the child's.
    return status, out, err, rss
