"""Scenario files: every shipped one loads, and every kind of mistake is named exactly
(file, table, key, expected, found, and a "did you mean" where one is close)."""

from __future__ import annotations

import math

import pytest

from simulator.errors import ScenarioError
from simulator.stress import (
    SCENARIO_DIR,
    AmplifySpec,
    BurstSpec,
    CpuContentionSpec,
    LatencyOverrides,
    ModelExceptionSpec,
    load_scenario,
    load_scenarios,
    scenario_names,
)

HEAD = '[scenario]\nname = "t"\n'


def _write(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", scenario_names())
def test_every_shipped_scenario_loads(name):
    scenario = load_scenario(name)
    assert scenario.name
    assert scenario.description
    assert scenario.path == SCENARIO_DIR / f"{name}.toml"


def test_shipped_scenarios_are_many_and_uniquely_named():
    names = scenario_names()
    assert len(names) >= 8
    assert {"calm", "open_auction_burst", "flash_crash", "feed_outage", "dirty_feed"} <= set(names)
    assert {"slow_model", "model_faults", "rate_x5", "cpu_contention"} <= set(names)
    assert len({s.name for s in load_scenarios(names)}) == len(names)


FULL_SCENARIO = """seed = 7
[[transform]]
kind = "burst"
duration_s = 300
factor = 10
[[transform]]
kind = "amplify"
copies = 2
[[fault]]
kind = "model_exception"
probability = 0.01
end_event = 1000
[[fault]]
kind = "cpu_contention"
workers = 1
[latency]
stage_us = {inference = 50, risk = 1.5}
conflation = "latest"
queue_bound = 64
"""


def test_a_full_scenario_reads_into_frozen_values_with_defaults(tmp_path):
    path = _write(tmp_path, HEAD + FULL_SCENARIO)
    s = load_scenario(path)
    assert (s.name, s.description, s.seed) == ("t", "", 7)
    assert s.transforms == (
        BurstSpec(start_s=0.0, duration_s=300.0, factor=10.0),
        AmplifySpec(copies=2, start_s=0.0, duration_s=math.inf, size_jitter=0.1),
    )
    assert isinstance(s.transforms[0].factor, float)  # ints widen where a number is due
    assert s.faults == (
        ModelExceptionSpec(probability=0.01, end_event=1000),
        CpuContentionSpec(workers=1),
    )
    assert s.latency == LatencyOverrides(
        stage_us=(("inference", 50.0), ("risk", 1.5)), conflation="latest", queue_bound=64
    )
    assert s.latency.as_dict() == {
        "stage_us": {"inference": 50.0, "risk": 1.5},
        "conflation": "latest",
        "queue_bound": 64,
    }
    assert s.needs_measured
    assert hash(s) == hash(load_scenario(path))


def test_a_scenario_is_found_by_name_and_a_misspelt_name_gets_a_hint():
    assert load_scenario("flash_crash").name == "flash crash"
    with pytest.raises(ScenarioError, match=r"^unknown scenario 'flash_crsh'; did you mean "):
        load_scenario("flash_crsh")


BAD_CASES = {
    "unknown table": (
        '[scenrio]\nname = "t"\n',
        r"bad\.toml: unknown table \[scenrio\]; did you mean 'scenario'\?$",
    ),
    "no scenario table": (
        '[[transform]]\nkind = "gap"\nduration_s = 1\n',
        r"bad\.toml: missing table \[scenario\]",
    ),
    "scenario without name": (
        "[scenario]\nseed = 1\n",
        r"bad\.toml: \[scenario\]: missing key 'name' \(a non-empty string\)$",
    ),
    "misspelt scenario key": (
        HEAD + "sede = 1\n",
        r"bad\.toml: \[scenario\]: unknown key 'sede'; did you mean 'seed'\?$",
    ),
    "negative seed": (
        HEAD + "seed = -1\n",
        r"bad\.toml: \[scenario\]: 'seed' must be an integer in 0\.\.2\^63-1; found int -1$",
    ),
    "float seed": (
        HEAD + "seed = 1.5\n",
        r"'seed' must be an integer in 0\.\.2\^63-1; found float 1\.5$",
    ),
    "misspelt key in second transform": (
        HEAD + '[[transform]]\nkind = "gap"\nduration_s = 1\n'
        '[[transform]]\nkind = "burst"\nduraton_s = 300\nfactor = 10\n',
        r"bad\.toml: \[\[transform\]\] #2 \(burst\): unknown key 'duraton_s'; "
        r"did you mean 'duration_s'\?$",
    ),
    "key with no close match": (
        HEAD + '[[transform]]\nkind = "gap"\nduration_s = 1\nzzz = 1\n',
        r"#1 \(gap\): unknown key 'zzz' \(expected one of: duration_s, start_s\)$",
    ),
    "unknown transform kind": (
        HEAD + '[[transform]]\nkind = "brust"\n',
        r"bad\.toml: \[\[transform\]\] #1: unknown kind 'brust'; did you mean 'burst'\?$",
    ),
    "missing kind": (
        HEAD + "[[transform]]\nfactor = 2\n",
        r"\[\[transform\]\] #1: missing key 'kind' \(a transform kind: burst, amplify, gap, ",
    ),
    "fault kind under transform": (
        HEAD + '[[transform]]\nkind = "model_exception"\n',
        r"\[\[transform\]\] #1: unknown kind 'model_exception' \(expected one of: amplify, ",
    ),
    "missing required key": (
        HEAD + '[[transform]]\nkind = "gap"\n',
        r"bad\.toml: \[\[transform\]\] #1 \(gap\): missing key 'duration_s' "
        r"\(a number of seconds > 0 \(inf: to the end\)\)$",
    ),
    "string for a number": (
        HEAD + '[[transform]]\nkind = "burst"\nduration_s = 1\nfactor = "ten"\n',
        r"#1 \(burst\): 'factor' must be a number > 1; found str 'ten'$",
    ),
    "number out of range": (
        HEAD + '[[transform]]\nkind = "burst"\nduration_s = 1\nfactor = 0.5\n',
        r"#1 \(burst\): 'factor' must be a number > 1; found float 0\.5$",
    ),
    "nan": (
        HEAD + '[[transform]]\nkind = "duplicate"\nprobability = nan\n',
        r"'probability' must be a number in \(0, 1\]; found float nan$",
    ),
    "bool for an integer": (
        HEAD + '[[transform]]\nkind = "amplify"\ncopies = true\n',
        r"#1 \(amplify\): 'copies' must be an integer in 1\.\.1000; found bool True$",
    ),
    "float for an integer": (
        HEAD + '[[transform]]\nkind = "amplify"\ncopies = 2.0\n',
        r"'copies' must be an integer in 1\.\.1000; found float 2\.0$",
    ),
    "unknown corrupt mode": (
        HEAD + '[[transform]]\nkind = "corrupt"\nprobability = 0.1\nmodes = ["nan", "inf"]\n',
        r"'modes' must be a non-empty list of 'nan', 'zero', 'negative', 'crossed'; "
        r"found list \['nan', 'inf'\]$",
    ),
    "shock of -100%": (
        HEAD + '[[transform]]\nkind = "price_shock"\npct = -100\nrecovery_s = 1\n',
        r"#1 \(price_shock\): 'pct' must be a number > -100 and not 0; found int -100$",
    ),
    "transform as a plain table": (
        HEAD + '[transform]\nkind = "gap"\n',
        r"bad\.toml: 'transform' must be an array of tables, written \[\[transform\]\]; "
        r"found dict$",
    ),
    "fault window backwards": (
        HEAD + '[[fault]]\nkind = "model_exception"\nprobability = 0.1\n'
        "start_event = 10\nend_event = 10\n",
        r"bad\.toml: \[\[fault\]\] #1 \(model_exception\): 'end_event' must be greater than "
        r"'start_event' \(10\); found int 10$",
    ),
    "misspelt fault kind": (
        HEAD + '[[fault]]\nkind = "inference_latncy"\n',
        r"\[\[fault\]\] #1: unknown kind 'inference_latncy'; did you mean 'inference_latency'\?$",
    ),
    "zero spike": (
        HEAD + '[[fault]]\nkind = "inference_latency"\nextra_us = 0\nprobability = 1\n',
        r"'extra_us' must be a number of microseconds > 0; found int 0$",
    ),
    "misspelt latency key": (
        HEAD + "[latency]\nqueue_bund = 5\n",
        r"bad\.toml: \[latency\]: unknown key 'queue_bund'; did you mean 'queue_bound'\?$",
    ),
    "misspelt stage": (
        HEAD + "[latency]\nstage_us = {inferense = 5}\n",
        r"bad\.toml: \[latency\.stage_us\]: unknown key 'inferense'; did you mean 'inference'\?$",
    ),
    "negative stage time": (
        HEAD + "[latency]\nstage_us = {risk = -1}\n",
        r"\[latency\.stage_us\]: 'risk' must be a number of microseconds >= 0; found int -1$",
    ),
    "unknown conflation": (
        HEAD + '[latency]\nconflation = "newest"\n',
        r"\[latency\]: 'conflation' must be one of 'all', 'latest'; found str 'newest'$",
    ),
    "not toml": (HEAD + "seed = = 1\n", r"bad\.toml: not valid TOML \("),
}


@pytest.mark.parametrize("case", BAD_CASES, ids=list(BAD_CASES))
def test_a_wrong_scenario_file_is_named_exactly(tmp_path, case):
    text, pattern = BAD_CASES[case]
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError, match=r"^" + str(tmp_path).replace(".", r"\.") + "/"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match=pattern):
        load_scenario(path)


def test_two_scenarios_with_one_name_are_refused(tmp_path):
    a = _write(tmp_path, HEAD, "a.toml")
    b = _write(tmp_path, HEAD, "b.toml")
    with pytest.raises(
        ScenarioError, match=r"two scenarios are named 't': .*a\.toml and .*b\.toml"
    ):
        load_scenarios([a, b])
