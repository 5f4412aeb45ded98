"""``python -m ctrldial.bench probe JSON``: the memory probe's subprocess (internal; use `ctrldial bench`)."""

import sys

from ctrldial.bench.memory import probe_main

if len(sys.argv) == 3 and sys.argv[1] == "probe":
    probe_main(sys.argv[2])
else:
    sys.exit("usage: python -m ctrldial.bench probe JSON (internal; use `ctrldial bench`)")
