"""Summarises a V8 .cpuprofile (node --cpu-prof): self time by function, and time inside named
frames (inclusive), as a text table. Used for the CPU side of bench/h200-issue15.sh.

    python3 bench/cpuprofile_top.py PROFILE.cpuprofile [--top 30] [--inclusive replay,dispatch,...]
"""

import collections
import json
import sys


def main() -> None:
    args = sys.argv[1:]
    path = args[0]
    top = int(args[args.index("--top") + 1]) if "--top" in args else 30
    names = args[args.index("--inclusive") + 1].split(",") if "--inclusive" in args else []
    prof = json.load(open(path))
    nodes = {n["id"]: n for n in prof["nodes"]}
    parent = {}
    for n in prof["nodes"]:
        for c in n.get("children", []):
            parent[c] = n["id"]
    self_us = collections.Counter()
    incl_us = collections.Counter()
    total = 0
    for sample, dt in zip(prof["samples"], prof["timeDeltas"]):
        total += dt
        cf = nodes[sample]["callFrame"]
        self_us[(cf["functionName"] or "(anonymous)", cf["url"].split("/")[-1], cf["lineNumber"])] += dt
        seen = set()
        nid = sample
        while nid is not None:
            fn = nodes[nid]["callFrame"]["functionName"]
            if fn in names and fn not in seen:
                incl_us[fn] += dt
                seen.add(fn)
            nid = parent.get(nid)
    print(f"total sampled: {total / 1e3:.1f} ms")
    print("self time by function:")
    for (fn, url, line), us in self_us.most_common(top):
        print(f"  {100 * us / total:5.1f}%  {us / 1e3:9.1f} ms  {fn}  {url}:{line}")
    if names:
        print("inclusive time in:")
        for fn in names:
            print(f"  {100 * incl_us[fn] / total:5.1f}%  {incl_us[fn] / 1e3:9.1f} ms  {fn}")


main()
