"""The contexts a run generated for, as a `ctrldial eval --contexts` file whose rows pair with the run's own.

    python benchmarks/definitive/contexts.py RUN_DIR > RUN_DIR/contexts.jsonl
"""

import json
import sys
from pathlib import Path

from ctrldial.evaluation import contexts_of_run

for line in contexts_of_run(Path(sys.argv[1])):
    print(json.dumps(line, ensure_ascii=False))
