"""Runs one measurement in this (fresh) process and prints ``RESULT <json>``.

Usage: ``python -m bench.child module:function '<json keyword arguments>'``. Unless the
keyword ``cold`` is true, pyarrow's one-off import cost is paid before the call (see
:func:`bench.common.warm_arrow`).
"""

from __future__ import annotations

import importlib
import json
import sys

from bench.common import warm_arrow


def main(argv: list[str]) -> int:
    target, kwargs_json = argv
    module_name, function_name = target.split(":")
    kwargs = json.loads(kwargs_json)
    warm_arrow()
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**kwargs)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
