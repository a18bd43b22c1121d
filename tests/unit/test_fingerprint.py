"""Fingerprints: what a step's code digest sees (and does not), and what they cost.

Each "cell" is source compiled with ``exec`` into a namespace named ``__main__``, as a
notebook's cells are, under a file name and first line of its own: re-running an unedited
cell must keep the digest, editing the cell or a helper cell must change it.
"""

from __future__ import annotations

import functools
import json
import textwrap
from collections.abc import Callable
from itertools import count

import cloudpickle
import pytest

from evkit import codec, fingerprint, workflow
from evkit.fingerprint import (
    Fingerprinter,
    combine,
    function_fingerprint,
    step_code_fingerprint,
    value_fingerprint,
)

_cells = count()


def run_cell(source: str, namespace: dict[str, object] | None = None) -> dict[str, object]:
    """Execute ``source`` in ``namespace`` (a fresh ``__main__`` one by default), as a
    notebook cell: its own file name, and a first line that moves on each run."""
    if namespace is None:
        namespace = {"__name__": "__main__"}
    number = next(_cells)
    padded = "\n" * (number % 7) + textwrap.dedent(source)
    exec(compile(padded, f"/tmp/ipykernel_0/cell{number}.py", "exec"), namespace)
    return namespace


def digest_of(source: str, name: str = "step") -> str:
    namespace = run_cell(source)
    return function_fingerprint(namespace[name])  # type: ignore[arg-type]


BASE = """
    LIMIT = 10

    def helper(x):
        return x + 1

    def step(x, scale=2, *, offset=0):
        return [helper(i) * scale + offset for i in range(min(x, LIMIT))]
"""


def test_the_same_source_run_again_keeps_the_digest() -> None:
    assert digest_of(BASE) == digest_of(BASE) == digest_of("\n\n# a comment\n" + textwrap.dedent(BASE))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("return [helper(i) * scale", "return [helper(i) + scale"),  # the body
        ("LIMIT = 10", "LIMIT = 11"),  # a global constant it reads
        ("scale=2", "scale=3"),  # a default
        ("offset=0", "offset=1"),  # a keyword-only default
        ("return x + 1", "return x + 2"),  # a helper it calls
        ("def step(x,", "def step(y, x=0,"),  # its signature
    ],
    ids=["body", "global-constant", "default", "kwdefault", "helper", "signature"],
)
def test_a_change_in_what_the_step_runs_changes_the_digest(old: str, new: str) -> None:
    assert old in BASE
    assert digest_of(BASE) != digest_of(BASE.replace(old, new))


def test_a_closure_value_counts() -> None:
    source = """
        def make(k):
            def step(x):
                return x * k
            return step
    """
    namespace = run_cell(source)
    make = namespace["make"]
    assert function_fingerprint(make(2)) == function_fingerprint(make(2))  # type: ignore[operator]
    assert function_fingerprint(make(2)) != function_fingerprint(make(3))  # type: ignore[operator]


def test_a_helper_of_a_helper_counts() -> None:
    source = """
        def inner(x):
            return x - 1

        def helper(x):
            return inner(x) * 2

        def step(x):
            return helper(x)
    """
    assert digest_of(source) != digest_of(source.replace("x - 1", "x - 2"))


def test_redefining_a_helper_cell_changes_the_callers_digest_in_the_same_process() -> None:
    namespace = run_cell(BASE)
    before = function_fingerprint(namespace["step"])  # type: ignore[arg-type]
    assert function_fingerprint(namespace["step"]) == before  # cached, still valid
    run_cell("def helper(x):\n    return x + 1\n", namespace)  # re-run unedited
    assert function_fingerprint(namespace["step"]) == before  # type: ignore[arg-type]
    run_cell("def helper(x):\n    return x + 100\n", namespace)  # edited
    assert function_fingerprint(namespace["step"]) != before  # type: ignore[arg-type]
    run_cell("LIMIT = 10", namespace)
    run_cell("def helper(x):\n    return x + 1\n", namespace)
    assert function_fingerprint(namespace["step"]) == before  # type: ignore[arg-type]


def test_a_helper_of_a_helper_redefined_later_is_seen_through_the_cache() -> None:
    namespace = run_cell(
        "def inner():\n    return 1\ndef helper():\n    return inner()\ndef step():\n    return helper()\n"
    )
    before = function_fingerprint(namespace["step"])  # type: ignore[arg-type]
    run_cell("def inner():\n    return 2\n", namespace)
    assert function_fingerprint(namespace["step"]) != before  # type: ignore[arg-type]


def test_recursion_and_mutual_recursion_terminate_and_still_see_changes() -> None:
    recursive = """
        def step(n):
            return 0 if n == 0 else step(n - 1) + 1
    """
    assert digest_of(recursive) == digest_of(recursive)
    mutual = """
        def even(n):
            return True if n == 0 else odd(n - 1)

        def odd(n):
            return False if n == 0 else even(n - 1)

        def step(n):
            return even(n)
    """
    assert digest_of(mutual) == digest_of(mutual)
    assert digest_of(mutual, "even") == digest_of(mutual, "even")
    assert digest_of(mutual, "even") != digest_of(mutual, "odd")
    assert digest_of(mutual) != digest_of(mutual.replace("False if", "None if"))
    assert digest_of(mutual, "odd") != digest_of(mutual.replace("True if", "None if"), "odd")


def test_mutual_recursion_seen_from_either_side_after_the_other_was_cached() -> None:
    source = "def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\n"
    namespace = run_cell(source)
    first_a = function_fingerprint(namespace["a"])  # type: ignore[arg-type]
    first_b = function_fingerprint(namespace["b"])  # type: ignore[arg-type]
    fresh = run_cell(source)
    assert function_fingerprint(fresh["b"]) == first_b  # type: ignore[arg-type]
    assert function_fingerprint(fresh["a"]) == first_a  # type: ignore[arg-type]


def test_a_function_brought_back_by_cloudpickle_keeps_its_digest() -> None:
    # A resumed run's stored DAG holds the user's functions pickled by value: compared
    # with the live definitions, an unedited one must be unchanged.
    source = """
        K = [1, 2]

        def helper(x):
            return x + K[0]

        class Model:
            def predict(self, x):
                return helper(x)

        def step(x, y=3):
            return [helper(i) for i in range(x)], Model().predict(y)
    """
    live = run_cell(source)["step"]
    loaded = cloudpickle.loads(cloudpickle.dumps(live))
    assert loaded is not live
    assert function_fingerprint(loaded) == function_fingerprint(live)  # type: ignore[arg-type]


def forget_origins() -> None:
    fingerprint._origin_of_imported.cache_clear()
    fingerprint._file_origin.cache_clear()


def test_installed_functions_are_seen_by_name_and_version_not_code(monkeypatch: pytest.MonkeyPatch) -> None:
    source = """
        from cloudpickle import dumps

        def step(x):
            return dumps(x)
    """
    before = digest_of(source)
    # Their code is not read: a different code object under the same name and version...
    monkeypatch.setattr(cloudpickle.dumps, "__code__", (lambda *a, **k: b"").__code__)
    assert digest_of(source) == before
    monkeypatch.undo()
    # ...but another version of the package is a change.
    monkeypatch.setattr(fingerprint, "_installed_version", lambda top: f"{top}==0.0-test")
    forget_origins()
    try:
        assert digest_of(source) != before
    finally:
        forget_origins()
    assert function_fingerprint(json.dumps) == function_fingerprint(json.dumps)
    assert function_fingerprint(json.dumps) != function_fingerprint(json.loads)
    assert function_fingerprint(len) != function_fingerprint(abs)  # builtins: by name


def test_installed_callables_without_code_are_told_apart_by_name() -> None:
    np = pytest.importorskip("numpy")
    source = "import numpy as np\nadd = np.add\ndef step(x):\n    return add(x, 1)\n"
    assert digest_of(source) == digest_of(source)
    assert digest_of(source) != digest_of(source.replace("np.add", "np.subtract"))
    assert function_fingerprint(np.add) != function_fingerprint(np.subtract)


def test_a_module_is_seen_by_name() -> None:
    source = """
        import math

        def step(x):
            return math.floor(x)
    """
    assert digest_of(source) == digest_of(source)
    assert digest_of(source) != digest_of(source.replace("import math", "import cmath as math"))


def test_a_partial_is_its_function_and_its_arguments() -> None:
    namespace = run_cell(BASE)
    step = namespace["step"]
    assert function_fingerprint(functools.partial(step, 1)) == function_fingerprint(
        functools.partial(step, 1)
    )  # type: ignore[arg-type]
    assert function_fingerprint(functools.partial(step, 1)) != function_fingerprint(
        functools.partial(step, 2)
    )  # type: ignore[arg-type]
    assert function_fingerprint(functools.partial(step, scale=1)) != function_fingerprint(step)  # type: ignore[arg-type]
    other = run_cell(BASE.replace("x + 1", "x + 5"))["step"]
    assert function_fingerprint(functools.partial(step, 1)) != function_fingerprint(
        functools.partial(other, 1)
    )  # type: ignore[arg-type]
    caller = """
        import functools

        def helper(x, y):
            return x + y

        add_one = functools.partial(helper, 1)

        def step(x):
            return add_one(x)
    """
    assert digest_of(caller) != digest_of(caller.replace("partial(helper, 1)", "partial(helper, 2)"))


def test_a_lambda_counts_like_a_function() -> None:
    source = """
        clean = lambda s: s.strip()

        def step(s):
            return clean(s)
    """
    assert digest_of(source) == digest_of(source)
    assert digest_of(source) != digest_of(source.replace("strip", "lower"))
    assert digest_of(source, "clean") != digest_of(source.replace("strip", "lower"), "clean")


def test_a_step_function_calling_another_step_function_sees_its_function() -> None:
    source = """
        from evkit import workflow

        @workflow.step
        def load(x):
            return x + 1

        @workflow.step
        def step(x):
            return load(x) * 2
    """
    namespace = run_cell(source)
    assert step_code_fingerprint(namespace["step"]) == function_fingerprint(namespace["step"].func)  # type: ignore[attr-defined]
    assert digest_of(source) == digest_of(source)
    assert digest_of(source) != digest_of(source.replace("x + 1", "x + 3"))


def test_a_class_defined_by_the_user_counts_by_its_methods_and_attributes() -> None:
    source = """
        class Model:
            factor = 2

            def __init__(self, bias):
                self.bias = bias

            def predict(self, x):
                return x * self.factor + self.bias

            @staticmethod
            def name():
                return "model"

            @property
            def doubled(self):
                return self.bias * 2

        def step(x):
            return Model(1).predict(x)
    """
    assert digest_of(source) == digest_of(source)
    for old, new in [
        ("factor = 2", "factor = 3"),
        ("x * self.factor", "x - self.factor"),
        ('return "model"', 'return "other"'),
        ("self.bias * 2", "self.bias * 3"),
    ]:
        assert digest_of(source) != digest_of(source.replace(old, new)), old


def test_an_event_listener_class_has_a_fingerprint() -> None:
    source = """
        from evkit import workflow

        class Approval(workflow.EventListener):
            async def poll_for_event(self, key):
                return {"key": key}
    """
    assert digest_of(source, "Approval") == digest_of(source, "Approval")
    assert digest_of(source, "Approval") != digest_of(source.replace('"key": key', '"id": key'), "Approval")
    # evkit's own listeners are installed code: by name and evkit's version.
    assert step_code_fingerprint(workflow.ManualListener) == step_code_fingerprint(workflow.ManualListener)


def test_a_global_named_like_an_attribute_the_step_reads_is_no_change() -> None:
    namespace = run_cell("def step(table):\n    return table.shape\n")
    before = function_fingerprint(namespace["step"])  # type: ignore[arg-type]
    namespace["shape"] = (1, 2)
    assert function_fingerprint(namespace["step"]) == before  # type: ignore[arg-type]


def test_a_function_reached_through_a_users_module_counts() -> None:
    import types

    helpers = types.ModuleType("user_helpers_for_test")  # a module of the user's (no file)
    run_cell("def clean(s):\n    return s.strip()\n", vars(helpers))
    helpers.clean.__module__ = helpers.__name__
    namespace = run_cell(
        "def step(s):\n    return helpers.clean(s)\n", {"__name__": "__main__", "helpers": helpers}
    )
    before = function_fingerprint(namespace["step"])  # type: ignore[arg-type]
    run_cell("def clean(s):\n    return s.lower()\n", vars(helpers))
    helpers.clean.__module__ = helpers.__name__
    assert function_fingerprint(namespace["step"]) != before  # type: ignore[arg-type]


def test_a_small_global_container_counts_by_value_read_when_first_met() -> None:
    config_cell = "SETTINGS = {'threshold': 3, 'names': ['a', 'b']}\n"
    namespace = run_cell(config_cell + "def step(x):\n    return x > SETTINGS['threshold']\n")
    before = function_fingerprint(namespace["step"])  # type: ignore[arg-type]
    run_cell(config_cell, namespace)  # the config cell run again, unedited
    assert function_fingerprint(namespace["step"]) == before  # type: ignore[arg-type]
    run_cell(config_cell.replace("3", "4"), namespace)  # edited
    edited = function_fingerprint(namespace["step"])  # type: ignore[arg-type]
    assert edited != before
    # The documented limit: changed in place, it is read again only in a new process.
    namespace["SETTINGS"]["threshold"] = 5  # type: ignore[index]
    assert function_fingerprint(namespace["step"]) == edited  # type: ignore[arg-type]


def test_a_global_list_a_step_appends_to_is_no_change_after_the_run() -> None:
    # A log or a counter the step fills as it runs: the next run must reuse the step.
    namespace = run_cell(
        "CALLS = []\ndef helper():\n    return 1\n"
        "def step():\n    CALLS.append('step')\n    return helper()\n"
    )
    before = function_fingerprint(namespace["step"])  # type: ignore[arg-type]
    namespace["step"]()  # type: ignore[operator]
    assert function_fingerprint(namespace["step"]) == before  # type: ignore[arg-type]
    run_cell("def helper():\n    return 1\n", namespace)  # an unedited cell run again: a new walk
    assert function_fingerprint(namespace["step"]) == before  # type: ignore[arg-type]


def test_a_small_registry_of_functions_counts_by_the_code_of_each() -> None:
    source = (
        "def a(x):\n    return x\ndef b(x):\n    return -x\nHANDLERS = {'go': a}\n"
        "def step(kind, x):\n    return HANDLERS[kind](x)\n"
    )
    before = function_fingerprint(run_cell(source)["step"])  # type: ignore[arg-type]
    assert function_fingerprint(run_cell(source)["step"]) == before  # type: ignore[arg-type]
    assert function_fingerprint(run_cell(source.replace("'go': a", "'go': b"))["step"]) != before  # type: ignore[arg-type]
    assert function_fingerprint(run_cell(source.replace("return x\n", "return x + 1\n", 1))["step"]) != before  # type: ignore[arg-type]


def test_odd_globals_never_break_a_fingerprint() -> None:
    source = """
        class Proxy:
            def __getattr__(self, name):
                raise RuntimeError("no attributes here")

            def __len__(self):
                raise RuntimeError("no length either")

            def __call__(self):
                return 1

        PROXY = Proxy()
        NESTED = []
        for _ in range(5_000):
            NESTED = [NESTED]

        def step(x):
            return PROXY() + len(NESTED) + x
    """
    assert digest_of(source) == digest_of(source)


def test_large_global_data_gets_a_cheap_check_not_a_hash() -> None:
    np = pytest.importorskip("numpy")
    source = "def step(i):\n    return float(TABLE[i])\n"
    table = np.arange(2_000_000, dtype="float64")
    first = run_cell(source, {"__name__": "__main__", "TABLE": table})
    before = function_fingerprint(first["step"])  # type: ignore[arg-type]
    again = run_cell(source, {"__name__": "__main__", "TABLE": table.copy()})
    assert function_fingerprint(again["step"]) == before  # type: ignore[arg-type]
    # What the cheap check sees: type, shape, dtype, the first and the last item.
    for changed in (table[:-1], table.astype("float32"), table + 1, np.append(table[:-1], -1.0)):
        other = run_cell(source, {"__name__": "__main__", "TABLE": changed})
        assert function_fingerprint(other["step"]) != before  # type: ignore[arg-type]
    # The documented limit: an item in the middle is not seen...
    middle = table.copy()
    middle[1_000_000] = -1.0
    unseen = run_cell(source, {"__name__": "__main__", "TABLE": middle})
    assert function_fingerprint(unseen["step"]) == before  # type: ignore[arg-type]
    # ...nor, within one process, a change in place of an object the digest was made from.
    table[0] = -1.0
    assert function_fingerprint(first["step"]) == before  # type: ignore[arg-type]


@pytest.mark.slow  # importing pandas
def test_a_large_list_is_data_and_a_dataframe_is_checked_cheaply() -> None:
    pd = pytest.importorskip("pandas")
    source = "def step(i):\n    return DATA[i]\n"
    big = list(range(10_000))
    assert digest_of_with(source, DATA=big) == digest_of_with(source, DATA=list(big))
    assert digest_of_with(source, DATA=big) != digest_of_with(source, DATA=[*big, 1])
    frame = pd.DataFrame({"a": range(1_000), "b": [1.5] * 1_000})
    assert digest_of_with(source, DATA=frame) == digest_of_with(source, DATA=frame.copy())
    assert digest_of_with(source, DATA=frame) != digest_of_with(source, DATA=frame.rename(columns={"b": "c"}))
    assert digest_of_with(source, DATA=frame) != digest_of_with(source, DATA=frame.head(999))


def digest_of_with(source: str, **globals_: object) -> str:
    return function_fingerprint(run_cell(source, {"__name__": "__main__", **globals_})["step"])  # type: ignore[arg-type]


def test_an_instance_of_a_users_class_is_its_class_code_and_attributes_not_its_address() -> None:
    source = """
        class Config:
            def __init__(self, n):
                self.n = n

        def step(x):
            return x * CONFIG.n
    """
    first = run_cell(source)
    first["CONFIG"] = first["Config"](2)  # type: ignore[operator]
    second = run_cell(source)
    second["CONFIG"] = second["Config"](2)  # type: ignore[operator]
    third = run_cell(source)
    third["CONFIG"] = third["Config"](3)  # type: ignore[operator]
    edited = run_cell(source.replace("self.n = n", "self.n = -n"))
    edited["CONFIG"] = edited["Config"](2)  # type: ignore[operator]
    digests = [function_fingerprint(ns["step"]) for ns in (first, second, third, edited)]  # type: ignore[arg-type]
    assert digests[0] == digests[1]
    assert digests[2] != digests[0]  # another attribute value
    assert digests[3] not in (digests[0], digests[2])  # the class's code changed


def test_a_fan_out_of_one_function_is_fingerprinted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = run_cell(BASE)
    walked: list[object] = []
    real = fingerprint._feed_code

    def counting(code: object, feed: Callable[[bytes], None]) -> None:
        walked.append(code)
        real(code, feed)  # type: ignore[arg-type]

    monkeypatch.setattr(fingerprint, "_feed_code", counting)
    batch = Fingerprinter()
    digests = {batch.code(namespace["step"]) for _ in range(10_000)}  # type: ignore[arg-type]
    digests |= {function_fingerprint(namespace["step"]) for _ in range(1_000)}  # type: ignore[arg-type]
    assert len(digests) == 1
    assert len(walked) == 3  # step, its list comprehension and helper, once each


def test_plain_literal_values_are_digested_without_pickling(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = [None, True, 1, 1.0, "1", b"1", (1, "a", None), [1, 2], {"a": (1.5, b"x")}, {3, 1, 2}, 1 + 2j]
    expected = [value_fingerprint(v) for v in plain]
    assert len(set(expected)) == len(plain), "distinct values must not collide"

    def no_pickling(value: object) -> bytes:
        raise AssertionError(f"pickled {value!r}")

    monkeypatch.setattr(codec, "dumps", no_pickling)
    assert [value_fingerprint(v) for v in plain] == expected
    assert value_fingerprint([1, 2]) != value_fingerprint((1, 2))
    assert value_fingerprint({"a": 1, "b": 2}) != value_fingerprint({"a": 1, "b": 3})


def test_other_literal_values_are_digested_by_pickle_or_a_cheap_check() -> None:
    import threading

    assert value_fingerprint(range(3)) == value_fingerprint(range(3)) != value_fingerprint(range(4))
    lock = threading.Lock()  # cannot be pickled: the cheap check
    assert value_fingerprint(lock) == value_fingerprint(threading.Lock())
    step = run_cell(BASE)["step"]
    assert value_fingerprint(step) == value_fingerprint(run_cell(BASE)["step"])  # by code, not by pickle


def test_combine_depends_on_order_and_boundaries() -> None:
    assert combine(["a", "b"]) != combine(["b", "a"])
    assert combine(["ab", "c"]) != combine(["a", "bc"])
    assert len(combine([])) == 2 * fingerprint.DIGEST_SIZE


def test_the_global_names_read_from_bytecode_are_those_dis_reads() -> None:
    import dis
    import types

    # 700 globals: arguments past 255 need EXTENDED_ARG prefixes.
    source = "def step():\n    x.attribute\n" + "".join(f"    g{i}\n" for i in range(700))
    code = run_cell(source)["step"].__code__  # type: ignore[attr-defined]
    expected: set[str] = set()
    for current in (code, *[c for c in code.co_consts if isinstance(c, types.CodeType)]):
        expected |= {i.argval for i in dis.get_instructions(current) if i.opname == "LOAD_GLOBAL"}
    assert fingerprint._read_global_names(code) == tuple(sorted(expected))
    assert "attribute" not in expected
    assert len(expected) == 701


def test_references_inside_an_argument_stand_for_their_upstream_fingerprint() -> None:
    from evkit.dag import Ref

    upstream = {"a": "1" * 32, "b": "2" * 32}

    def substitute(value: object) -> str | None:
        return upstream[value.step_id] if isinstance(value, Ref) else None

    argument = {"inputs": [Ref("a"), (Ref("b"), 3)], "scale": 2}
    before = value_fingerprint(argument, substitute=substitute)
    assert value_fingerprint(argument, substitute=substitute) == before
    upstream["b"] = "3" * 32
    assert value_fingerprint(argument, substitute=substitute) != before
    alone = value_fingerprint(Ref("a"), substitute=substitute)
    upstream["a"] = "4" * 32
    assert value_fingerprint(Ref("a"), substitute=substitute) != alone


def test_functions_inside_an_argument_are_digested_by_code_not_by_pickle() -> None:
    first = run_cell(BASE)["step"]
    again = run_cell("\n\n" + textwrap.dedent(BASE))["step"]  # other file name and lines
    edited = run_cell(BASE.replace("x + 1", "x + 2"))["step"]
    assert value_fingerprint([first, 1]) == value_fingerprint([again, 1])
    assert value_fingerprint({"f": first}) != value_fingerprint({"f": edited})
