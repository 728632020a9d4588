"""A strategy's plug-ins that do not load: one red line naming the TOML key, exit 1."""

from __future__ import annotations

import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from tests.conftest import BUNDLED_DATA
from tests.plugins.strategy_files import write_strategy

AAPL = "nasdaq/AAPL/2012-06-21"


def _replay(tmp_path, features, **kwargs):
    toml = write_strategy(tmp_path / "mine", features, **kwargs)
    args = ["replay", AAPL, "--strategy", str(toml), "--out", str(tmp_path / "run"), "--no-report",
            "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ('names = ["x"]\nplugins = ["nosuchpkg.feats:X"]',
         "features.plugins[0] 'nosuchpkg.feats:X': no module named 'nosuchpkg'"),
        ('names = ["x"]\nplugins = ["nope.py:X"]',
         "features.plugins[0] 'nope.py:X': file {dir}/nope.py not found"),
        ('names = ["spread_bps"]\nplugins = ["features.py:SpreadBp"]',
         "features.plugins[0] 'features.py:SpreadBp': class 'SpreadBp' not found in features.py; "
         "did you mean 'SpreadBps'?"),
        ('names = ["x"]\nplugins = ["features.py:NoWrite"]',
         "features.plugins[0] 'features.py:NoWrite': NoWrite has no method write() (a feature "
         "needs on_quote(), write(), reset(), names, warmup)"),
        ('names = ["x"]\nplugins = ["features.py"]',
         "features.plugins[0] 'features.py': expected \"package.module:Class\" or "
         "\"file.py:Class\" (relative to the strategy's TOML)"),
        ('names = ["spread_bps"]\nplugins = [{ class = "features.py:SpreadBps", scal = 1.0 }]',
         "features.plugins[0]: SpreadBps takes no parameter 'scal'; did you mean 'scale'? "
         "(its parameters: scale)"),
        ('names = ["l1_imbalance"]\nplugins = ["features.py:SpreadBps"]',
         "features.plugins[0]: SpreadBps computes spread_bps, which features.names does not "
         "list; add it there (the vector holds what names lists)"),
        ('names = ["tilt", "l1_imbalance", "depth"]\nplugins = ["features.py:SizeTilt"]',
         "features.names must list SizeTilt's names together and in its order (tilt, depth)"),
        ('names = ["spread_bsp"]\nplugins = ["features.py:SpreadBps"]',
         "features.names: unknown feature 'spread_bsp'; did you mean 'spread_bps'?"),
        ("plugins = [3]",
         'features.plugins[0] must be "file.py:Class", "package.module:Class" or a table '
         '{ class = "...", parameter = value }; found 3'),
    ],
)  # fmt: skip
def test_a_plugin_that_does_not_load_is_one_line_naming_the_key(tmp_path, features, message):
    result = _replay(tmp_path, features)
    assert result.exit_code == 1, result.output
    expected = message.replace("{dir}", str((tmp_path / "mine").resolve()))
    assert result.output.strip() == f"ConfigError: {expected}"


def test_an_error_inside_the_users_module_names_its_line(tmp_path):
    code = "import numpy\n\nclass A:\n    pass\n\nraise_here = 1 / 0\n"
    result = _replay(tmp_path, 'names = ["x"]\nplugins = ["features.py:A"]', code=code)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "ConfigError: features.plugins[0] 'features.py:A': importing features.py failed: "
        "ZeroDivisionError: division by zero (features.py line 6)"
    )


def test_a_plugin_strategy_replays_and_digests_repeat(tmp_path):
    features = 'names = ["l1_imbalance", "spread_bps"]\nplugins = ["features.py:SpreadBps"]'
    first = _replay(tmp_path / "a", features)
    second = _replay(tmp_path / "b", features)
    assert first.exit_code == 0, first.output
    digests = [line for r in (first, second) for line in r.output.splitlines() if "digest" in line]
    assert len(digests) == 2
    assert digests[0] == digests[1]


def _replay_toml(tmp_path, toml, *extra):
    from tests.plugins.strategy_files import write_plugin_strategy

    path = write_plugin_strategy(tmp_path / "mine", toml)
    args = ["replay", AAPL, "--strategy", str(path), "--out", str(tmp_path / "run"), "--no-report",
            "--data-dir", str(BUNDLED_DATA), *extra]  # fmt: skip
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[policy]\nclass = "policy.py:NoDecide"\n',
         "policy.class 'policy.py:NoDecide': NoDecide has no method decide() (a policy needs "
         "decide(), reset())"),
        ('[policy]\nclass = "policy.py:BuyOnce"\nsise = 2.0\n',
         "policy: BuyOnce takes no parameter 'sise'; did you mean 'size'? (its parameters: "
         "size)"),
        ('[policy]\nsise = 2.0\n',
         "{toml}: unknown key 'policy.sise'; did you mean 'policy.size'?"),
        ('[risk]\nchecks = ["risk.py:NoCheck"]\n',
         "risk.checks[0] 'risk.py:NoCheck': NoCheck has no method check() (a risk check needs "
         "check())"),
        ('[risk]\nchecks = ["risky.py:RejectAll"]\n',
         "risk.checks[0] 'risky.py:RejectAll': file {dir}/risky.py not found"),
    ],
)  # fmt: skip
def test_a_policy_or_risk_check_that_does_not_load_names_its_key(tmp_path, toml, message):
    result = _replay_toml(tmp_path, toml)
    assert result.exit_code == 1, result.output
    folder = (tmp_path / "mine").resolve()
    expected = message.replace("{dir}", str(folder)).replace(
        "{toml}", str(tmp_path / "mine" / "strategy.toml")
    )
    assert result.output.strip() == f"ConfigError: {expected}"


def test_user_policy_and_risk_check_run_and_reasons_are_named(tmp_path):
    toml = ('[policy]\nclass = "policy.py:BuyOnce"\nsize = 2.0\n'
            '[risk]\nchecks = ["risk.py:RejectAll"]\n')  # fmt: skip
    result = _replay_toml(tmp_path, toml)
    assert result.exit_code == 0, result.output
    rejections = pl.read_parquet(tmp_path / "run" / "risk_rejections.parquet")
    assert rejections.height == 1
    assert rejections["reason"].to_list() == ["NOT_TODAY"]
    assert rejections["qty"].to_list() == [2.0]  # the --set-able parameter reached the class
    again = _replay_toml(tmp_path / "b", toml, "--set", "policy.size=3.0", "--set",
                         "risk.builtins=false")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert pl.read_parquet(tmp_path / "b" / "run" / "risk_rejections.parquet")["qty"].to_list() == [
        3.0
    ]
