#!/usr/bin/env python3
"""Runs every example of README.md, in order, as written, and fails if one fails.

The examples are the fenced `sh` and `python` blocks. An HTML comment just above a block says
how to run it (the default is: run it and expect exit status 0 within 10 minutes):

    <!-- example: background until="TEXT" -->  start it, wait until it prints TEXT, go on
    <!-- example: run-for seconds=N -->        run it for N seconds, then Ctrl-C; it must exit 0
                                                (ctrl-c="dies": or die of the SIGINT, as curl does)
    <!-- example: stop -->                     first Ctrl-C every background example, and wait
    <!-- example: skip reason="WHY" -->        not run here; printed with its reason

As the README says, `mtf-streamer`, `mtf-shim`, `mtf-monitor` and `mtf-mirror` stand for `cargo run --release
--bin NAME --`; the shell gets functions of those names that do exactly that.

The README uses the default segment (/dev/shm/mtf-candles) and ports (8000, 18812). So that it
can run as written without touching the machine's own, everything runs inside a private mount
and network namespace (`unshare`) with a fresh tmpfs on /dev/shm and only a loopback
interface. That needs root; without it this script says so loudly and runs nothing.

Usage: python3 scripts/readme_examples.py [README.md]
"""

import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRELUDE = "".join(
    '%s() { cargo run --quiet --release --bin %s -- "$@"; }\n' % (b, b)
    for b in ("mtf-streamer", "mtf-shim", "mtf-monitor", "mtf-mirror")
)
FOREGROUND_LIMIT = 600
UNTIL_LIMIT = 900  # the first example builds the release binaries


def blocks(text):
    """(line number, language, code, directive dict) for every sh/python block, in order."""
    out = []
    lines = text.split("\n")
    i = 0
    directives = {}
    while i < len(lines):
        line = lines[i]
        m = re.match(r"<!-- example: (\S+)(.*?)-->", line.strip())
        if m:
            kind, rest = m.group(1), m.group(2)
            args = {k: a or b for k, a, b in re.findall(r'([\w-]+)=(?:"([^"]*)"|(\S+))', rest)}
            directives[kind] = args
            i += 1
            continue
        fence = re.match(r"```(\w*)\s*$", line)
        if fence:
            lang = fence.group(1)
            start = i + 1
            j = start
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if lang in ("sh", "python"):
                out.append((start, lang, "\n".join(lines[start:j]) + "\n", directives))
            directives = {}
            i = j + 1
            continue
        if line.strip():
            directives = {} if not line.startswith("<!--") else directives
        i += 1
    return out


class Runner:
    def __init__(self):
        self.background = []  # (line, Popen, log path)
        self.passed = self.failed = self.skipped = 0
        self.logdir = os.path.join("/tmp", "readme-examples-%d" % os.getpid())
        os.makedirs(self.logdir, exist_ok=True)

    def command(self, lang, code):
        if lang == "python":
            return ["python3", "-c", code]
        return ["bash", "-e", "-o", "pipefail", "-c", PRELUDE + code]

    def start(self, line, lang, code):
        log = os.path.join(self.logdir, "example-%d.log" % line)
        f = open(log, "wb")
        p = subprocess.Popen(self.command(lang, code), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        return p, log

    @staticmethod
    def text(log):
        with open(log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, p, grace=20):
        """Ctrl-C (SIGINT to its process group), then SIGKILL after `grace` seconds."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            return p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return None

    def report(self, ok, line, what, log=None, why=""):
        if ok:
            self.passed += 1
            print("  ok    README.md:%d %s" % (line, what))
        else:
            self.failed += 1
            print("  FAIL  README.md:%d %s: %s" % (line, what, why))
            if log:
                print("        output:\n" + "\n".join("        | " + out for out in self.text(log).splitlines()[-30:]))
        sys.stdout.flush()

    def stop_background(self):
        for line, p, log in self.background:
            code = self.stop(p)
            if code not in (0, -signal.SIGINT, 130):
                self.report(False, line, "background example", log, "exit status %s after Ctrl-C" % code)
        self.background = []

    def run(self, line, lang, code, d):
        first = code.strip().splitlines()[0] if code.strip() else ""
        what = "%s: %s" % (lang, first[:70])
        if "skip" in d:
            self.skipped += 1
            print("  SKIP  README.md:%d %s (%s)" % (line, what, d["skip"].get("reason", "no reason given")))
            return
        if "stop" in d:
            self.stop_background()
        if "background" in d:
            until = d["background"].get("until", "")
            p, log = self.start(line, lang, code)
            deadline = time.monotonic() + UNTIL_LIMIT
            while until not in self.text(log):
                if p.poll() is not None or time.monotonic() > deadline:
                    self.report(False, line, what, log, "did not print %r (exit %s)" % (until, p.poll()))
                    self.stop(p)
                    return
                time.sleep(0.2)
            self.background.append((line, p, log))
            self.report(True, line, what + "  (running in the background)")
            return
        if "run-for" in d:
            seconds = float(d["run-for"].get("seconds", "3"))
            p, log = self.start(line, lang, code)
            # The first run of a binary may build it: count the time from its first output.
            deadline = time.monotonic() + UNTIL_LIMIT
            while not self.text(log) and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(seconds)
            if p.poll() is not None:
                self.report(False, line, what, log, "exited early with status %s" % p.returncode)
                return
            code_ = self.stop(p)
            # Our programs exit 0 on Ctrl-C; a tool such as curl dies of it, which the example
            # says with ctrl-c="dies".
            clean = (0, -signal.SIGINT, 130) if d["run-for"].get("ctrl-c") == "dies" else (0,)
            self.report(code_ in clean, line, what + "  (ran %g s, then Ctrl-C)" % seconds, log,
                        "exit status %s after Ctrl-C" % code_)
            return
        p, log = self.start(line, lang, code)
        try:
            rc = p.wait(FOREGROUND_LIMIT)
        except subprocess.TimeoutExpired:
            self.stop(p)
            rc = "timeout"
        self.report(rc == 0, line, what, log, "exit status %s" % rc)


def inside(readme):
    with open(readme, encoding="utf-8") as f:
        examples = blocks(f.read())
    r = Runner()
    print("README examples (%d), in order, in a private /dev/shm and network:" % len(examples))
    try:
        for line, lang, code, d in examples:
            r.run(line, lang, code, d)
    finally:
        r.stop_background()
    print("readme: %d passed, %d failed, %d skipped" % (r.passed, r.failed, r.skipped))
    if not r.failed:
        import shutil
        shutil.rmtree(r.logdir, ignore_errors=True)
    else:
        print("logs of every example: %s" % r.logdir)
    return 1 if r.failed else 0


def main():
    readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "README.md")
    if os.environ.get("README_EXAMPLES_INSIDE") == "1":
        # In the namespaces: a tmpfs of our own on /dev/shm, and the loopback up.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m,mode=1777", "tmpfs", "/dev/shm"], check=True)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        sys.exit(inside(readme))
    missing = [t for t in ("unshare", "ip", "mount", "curl") if subprocess.run(
        ["sh", "-c", "command -v " + t], stdout=subprocess.DEVNULL).returncode]
    if os.geteuid() != 0 or missing:
        why = "not root" if os.geteuid() != 0 else "missing " + ", ".join(missing)
        print("SKIPPED: the README examples did not run (%s): they need root and unshare, ip, mount "
              "and curl to run as written in a private /dev/shm and network namespace" % why)
        sys.exit(0)
    env = dict(os.environ, README_EXAMPLES_INSIDE="1")
    cmd = ["unshare", "--mount", "--net", "--fork", "--kill-child", sys.executable, os.path.abspath(__file__), readme]
    sys.exit(subprocess.run(cmd, env=env).returncode)


if __name__ == "__main__":
    main()
