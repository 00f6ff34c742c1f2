"""MT5's symbol groups, as ``symbols_get(group=...)`` takes them (mt5symbolsget_py):
comma-separated patterns with ``*``, ``!`` to exclude one; the last pattern that matches a
name decides."""

import fnmatch

# The longest `group` symbols_get takes: symbol names are at most 31 characters, so this is a
# hundred patterns and more.
MAX_GROUP = 4096


def _in_group(name, group):
    """MT5's group filter: comma-separated patterns with `*`, `!` to exclude; the last
    matching pattern decides."""
    verdict = False
    for pattern in (p.strip() for p in group.split(",")):
        if not pattern:
            continue
        exclude = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, pattern.lstrip("!")):
            verdict = not exclude
    return verdict
