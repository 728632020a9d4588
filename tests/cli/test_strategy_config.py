"""Strategy configuration errors through the CLI: one red line naming the key, exit 1."""

from __future__ import annotations

from click.testing import CliRunner

from cli import main
from tests.conftest import BUNDLED_DATA

AAPL = "nasdaq/AAPL/2012-06-21"


def _replay(tmp_path, *args):
    out = tmp_path / "run"
    return CliRunner().invoke(
        main,
        ["replay", AAPL, *args, "--out", str(out), "--no-report", "--data-dir", str(BUNDLED_DATA)],
    )


def test_a_range_error_names_the_key_not_the_class(tmp_path):
    result = _replay(tmp_path, "--strategy", "obi_mlp", "--set", "policy.threshold=0.7")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "ConfigError: policy.threshold must be in [0, 0.5) for policy.kind 'threshold'; found 0.7"
    )
    result = _replay(tmp_path, "--strategy", "obi_rule", "--set", "risk.max_position=0")
    assert result.output.strip() == (
        "ConfigError: risk.max_position must be a finite number > 0; found 0.0"
    )


def test_an_unknown_feature_names_features_names(tmp_path):
    result = _replay(tmp_path, "--strategy", "obi_rule", "--set", 'features.names=["spred"]')
    assert result.exit_code == 1
    assert result.output.strip() == (
        "ConfigError: features.names: unknown feature 'spred'; did you mean 'spread'?"
    )


def test_the_breaker_fallback_is_configurable_and_checked(tmp_path):
    sets = ("--set", "breaker.enabled=true", "--set", 'features.names=["spread", "rsi"]',
            "--set", 'model.feature="rsi"')  # fmt: skip
    result = _replay(tmp_path, "--strategy", "obi_rule", *sets)
    assert result.exit_code == 1
    assert result.output.strip().startswith(
        "ConfigError: breaker.fallback 'l1_imbalance' is not among the strategy's features.names "
        "(spread, rsi)"
    )
    result = _replay(tmp_path, "--strategy", "obi_rule", *sets, "--set", 'breaker.fallback="rsi"')
    assert result.exit_code == 0, result.output


def test_a_config_file_with_a_typo_gets_a_suggestion(tmp_path):
    extra = tmp_path / "extra.toml"
    extra.write_text("[risk]\nmax_postion = 5.0\n")
    result = _replay(tmp_path, "--strategy", "obi_rule", "--config", str(extra))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"ConfigError: {extra}: unknown key 'risk.max_postion'; did you mean 'risk.max_position'?"
    )


def test_a_strategy_path_outside_the_repository_replays(tmp_path):
    folder = tmp_path / "elsewhere" / "mine"
    folder.mkdir(parents=True)
    (folder / "strategy.toml").write_text(
        '[features]\nnames = ["l1_imbalance"]\n[breaker]\nenabled = false\n'
        '[policy]\nkind = "obi_rule"\nthreshold = 0.6\n'
    )
    result = _replay(tmp_path, "--strategy", str(folder / "strategy.toml"))
    assert result.exit_code == 0, result.output
    assert "mine on nasdaq/AAPL/2012-06-21" in result.output


def test_strategies_lists_shipped_and_local_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "strategy.toml").write_text('[strategy]\ndescription = "my own"\n')
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "strategy.toml").write_text("[policy]\nlot = -1.0\n")
    result = CliRunner().invoke(main, ["strategies", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:2] == ["obi_mlp", "shipped"] for line in lines)
    assert any(line.split()[0] == "mine" and "my own" in line for line in lines)
    assert any(line.split()[0] == "broken" and "invalid: policy.lot" in line for line in lines)


def test_strategies_defaults_is_toml_that_loads_back(tmp_path):
    import tomllib

    from simulator.settings import default_dict

    result = CliRunner().invoke(main, ["strategies", "--defaults"])
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.output) == default_dict()


def test_scenarios_lists_every_shipped_scenario():
    from simulator.stress.scenario import scenario_names

    result = CliRunner().invoke(main, ["scenarios"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.splitlines() if line.strip()}
    assert set(scenario_names()) <= listed
    assert "30 s with no market data" in result.output
