"""Typed settings: defaults, a strategy TOML holding only its changes, range errors naming the
key the user typed, and the plain-dict view that overrides merge into."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import pytest

from simulator.config import apply_overrides, load_strategy, strategy_path
from simulator.errors import ConfigError
from simulator.settings import SECTIONS, Settings, default_dict


def test_defaults_are_valid_and_every_section_is_a_frozen_dataclass():
    typed = Settings.of(default_dict())
    assert typed == Settings()
    for name, kind in SECTIONS.items():
        section = getattr(typed, name)
        assert isinstance(section, kind)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, dataclasses.fields(kind)[0].name, None)


def test_a_strategy_toml_changes_only_what_it_names():
    typed = load_strategy("obi_rule")
    assert typed.policy.kind == "obi_rule"
    assert typed.policy.threshold == 0.6
    assert typed.latency == Settings().latency  # not in obi_rule.toml: the defaults
    assert typed.as_dict()["latency"] == default_dict()["latency"]
    assert typed.strategy.name == "obi_rule"
    assert typed.features.names == ("l1_imbalance",)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("policy.threshold=0.7", r"^policy\.threshold must be in \[0, 0\.5\) for policy\.kind "
                                 r"'threshold'; found 0\.7$"),
        ("risk.max_position=-1", r"^risk\.max_position must be a finite number > 0; found -1\.0$"),
        ("risk.max_orders=0", r"^risk\.max_orders must be an integer > 0; found 0$"),
        ("strategy.timer_ms=-5", r"^strategy\.timer_ms must be a finite number >= 0"),
        ("policy.lot=20.0", r"^policy\.lot \(20\.0\) is larger than policy\.max_position"),
        ('venue.depth="l3"', r"^venue\.depth must be one of l1, l2; found 'l3'$"),
        ('latency.conflation="some"', r"^latency\.conflation must be one of all, latest"),
        ('strategy.kinds=["quotes", "bars"]', r"^strategy\.kinds must be a non-empty list"),
        ("breaker.max_violations=0", r"^breaker\.max_violations must be an integer >= 1"),
        ("train.hidden=[16, 0]", r"^train\.hidden must be a list of integers >= 1"),
    ],
)  # fmt: skip
def test_range_errors_name_the_key_the_user_typed(setting, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_strategy("obi_mlp"), sets=(setting,))


def test_rule_threshold_range_follows_the_kind():
    config = apply_overrides(load_strategy("obi_rule"), sets=("policy.threshold=0.9",))
    assert config.policy.threshold == 0.9
    with pytest.raises(ConfigError, match=r"^policy\.threshold must be in \[0, 1\.0\)"):
        apply_overrides(load_strategy("obi_rule"), sets=("policy.threshold=1.0",))


def test_unknown_keys_and_sections_in_a_strategy_toml_get_a_suggestion(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[policy]\nkind = "obi_rule"\ntreshold = 0.5\n')
    with pytest.raises(ConfigError, match=r"unknown key 'policy\.treshold'; did you mean "
                                          r"'policy\.threshold'\?$"):  # fmt: skip
        load_strategy(str(path))
    path.write_text("[polcy]\nkind = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section 'polcy'; did you mean 'policy'\?$"):
        load_strategy(str(path))


def test_a_strategy_folder_loads_by_its_folder_or_its_toml(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "strategy.toml").write_text('[strategy]\ndescription = "mine"\n')
    for name in (str(folder), str(folder / "strategy.toml")):
        strategy = load_strategy(name).strategy
        assert strategy.name == "mine"
        assert strategy.dir == str(folder)
    with pytest.raises(ConfigError, match=r"strategy file .*nope\.toml not found$"):
        load_strategy(str(folder / "nope.toml"))


def test_the_dict_view_is_plain_toml_values():
    typed = load_strategy("obi_mlp")
    plain = typed.as_dict()
    assert isinstance(plain["strategy"]["kinds"], list)
    assert plain["train"]["hidden"] == [64, 64]
    assert typed.train.hidden == (64, 64)


@pytest.mark.parametrize("strategy", ["obi_rule", "obi_mlp", "obi_maker", "examples/maker"])
def test_as_dict_is_the_inverse_of_of(strategy):
    """The dict view (manifest, overrides, content keys) is the defaults' keys in their order
    with the TOML's values, user plug-ins and policy parameters as written."""
    typed = load_strategy(strategy)
    plain = typed.as_dict()
    assert Settings.of(plain) == typed
    assert plain is not typed.as_dict()  # a fresh copy: editing it changes nothing
    written = tomllib.loads(strategy_path(strategy).read_text())
    for section, values in plain.items():
        if section == "policy" and "class" in written.get("policy", {}):
            assert plain["policy"] == written["policy"]  # the user's class: only its keys
            continue
        assert list(values) == list(default_dict()[section])
        for key, value in written.get(section, {}).items():
            assert values[key] == value
            assert type(values[key]) is type(default_dict()[section][key])
    assert json.loads(json.dumps(plain)) == plain  # JSON as it is (the manifest's)


def test_plugin_tables_and_policy_parameters_come_back_as_written():
    typed = load_strategy("examples/maker")
    plain = typed.as_dict()
    assert plain["features"]["plugins"] == [{"class": "features.py:ObiEwma", "halflife": 20.0}]
    assert plain["policy"]["class"] == "policy.py:JoinTheBest"
    assert next(iter(plain["policy"])) == "class"
    plain["policy"]["extra"] = 1
    assert "extra" not in typed.policy.params


def test_a_plugin_reads_back_as_written_table_or_string(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[features]\nplugins = [{ class = "f.py:A" }, "g.py:B"]\n'
                    '[risk]\nchecks = [{ class = "r.py:C", limit = 2.0 }]\n')  # fmt: skip
    typed = load_strategy(str(path))
    plain = typed.as_dict()
    assert plain["features"]["plugins"] == [{"class": "f.py:A"}, "g.py:B"]
    assert plain["risk"]["checks"] == [{"class": "r.py:C", "limit": 2.0}]
    assert Settings.of(plain) == typed
