#!/usr/bin/env python3
"""Reads a Prometheus text exposition (the file named, or stdin) with the reference parser of
PyPI `prometheus-client` (`prometheus_client.parser.text_string_to_metric_families`) and prints
what it read as one JSON object: {"families": {name: {"type", "help"}}, "samples": [{"family",
"name", "labels", "value"}]}. Counter families are named without `_total`, as the parser names
them; samples keep their full names. Text the parser refuses exits 1 with its error on stderr."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    if len(sys.argv) > 1:
        with open(sys.argv[1], encoding="utf-8") as f:
            text = f.read()
    else:
        text = sys.stdin.read()
    out = {"families": {}, "samples": []}
    try:
        for family in text_string_to_metric_families(text):
            if family.name in out["families"]:
                raise ValueError(f"family {family.name} appears twice")
            out["families"][family.name] = {"type": family.type, "help": family.documentation}
            for s in family.samples:
                value = s.value if math.isfinite(s.value) else str(s.value)
                out["samples"].append(
                    {"family": family.name, "name": s.name, "labels": s.labels, "value": value}
                )
    except Exception as e:  # the parser raises ValueError and others on bad input
        print(f"not a valid Prometheus text exposition: {e!r}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
