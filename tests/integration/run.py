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
import sys
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


def main():
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
