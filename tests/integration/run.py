#!/usr/bin/python3
"""Integration test runner: real programs, real clients, a real instance.

Discovers tests/integration/test_*.py; every top-level function named
test_* is one test.  A test takes no arguments and creates what it needs
(usually `with harness.Instance() as inst:`), so a failing test cleans up
after itself.  Runs tests one by one (or those named on the command line,
as FILE or FILE::FUNCTION), prints one line per test and, as its very last
line, "N passed, N failed".  Exit status 0 only when nothing failed.
"""
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def discover(selectors):
    tests = []
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        modname = fname[:-3]
        spec = importlib.util.spec_from_file_location(modname, os.path.join(HERE, fname))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(vars(mod)):
            fn = getattr(mod, name)
            if name.startswith("test_") and callable(fn):
                tests.append((modname, name, fn, fn.__code__.co_firstlineno))
    tests.sort(key=lambda t: (t[0], t[3]))
    if selectors:
        def wanted(mod, name):
            for sel in selectors:
                sel = os.path.basename(sel)
                if "::" in sel:
                    m, f = sel.split("::", 1)
                    if m.replace(".py", "") == mod and f == name:
                        return True
                elif sel.replace(".py", "") == mod or sel == name:
                    return True
            return False
        tests = [t for t in tests if wanted(t[0], t[1])]
    return tests


def tree_reachable_by_others(path):
    """True when every directory from / down to path lets other users in:
    run as root, the instances run as an unprivileged account that must
    reach the build and these scripts."""
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def rerun_from_reachable_copy():
    """The checkout sits where the test account cannot go (e.g. under
    /root): run the same tests from a copy of the tree in a world-readable
    temporary directory, then remove it."""
    src = os.path.dirname(os.path.dirname(HERE))
    top = tempfile.mkdtemp(prefix="postern-it-")
    os.chmod(top, 0o755)
    copy = os.path.join(top, "src")
    print(f"run.py: {src} is not reachable by other users; running from {copy}",
          flush=True)
    try:
        skip_at_top = {".git", "build-asan", "run"}   # run/ is `make run`'s instance
        shutil.copytree(src, copy, symlinks=True,
                        ignore=lambda d, names: [n for n in names if d == src
                                                 and n in skip_at_top])
        runner = os.path.join(copy, "tests", "integration", "run.py")
        return subprocess.run([sys.executable, runner] + sys.argv[1:]).returncode
    finally:
        shutil.rmtree(top, ignore_errors=True)


def main():
    if os.geteuid() == 0 and not tree_reachable_by_others(HERE):
        return rerun_from_reachable_copy()
    selectors = sys.argv[1:]
    tests = discover(selectors)
    passed = failed = 0
    failures = []
    for mod, name, fn, _ in tests:
        start = time.monotonic()
        try:
            fn()
        except Exception:
            failed += 1
            tb = traceback.format_exc()
            failures.append((mod, name, tb))
            print(f"FAIL {mod}::{name} ({time.monotonic() - start:.1f}s)", flush=True)
            print(tb, flush=True)
        else:
            passed += 1
            print(f"ok   {mod}::{name} ({time.monotonic() - start:.1f}s)", flush=True)
    if failures:
        print("\nfailed tests:")
        for mod, name, _ in failures:
            print(f"  {mod}::{name}")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
