"""Configuration (SPEC §1): flag > environment > TOML file > default; a bad value is one line naming the key."""

import tomllib
from pathlib import Path

import pytest

import prisme_lite

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_defaults_are_the_quick_demo():
    config = prisme_lite.load_config({}, environ={})
    assert (config["host"], config["port"], config["db"]) == ("127.0.0.1", 8000, "./prisme.db")
    assert config["origins"] == ["localhost", "127.0.0.1"]
    assert (config["rate_limit"], config["trust_proxy"], config["proxy_header"]) == (60, False, "X-Forwarded-For")


def test_precedence_flag_then_environment_then_file_then_default(tmp_path):
    path = tmp_path / "prisme.toml"
    path.write_text('port = 7001\nrate_limit = 10\nhost = "0.0.0.0"\norigins = ["a.example", "*.b.example"]\n')
    environ = {"PRISME_CONFIG": str(path), "PRISME_PORT": "7002", "PRISME_RATE_LIMIT": "20"}
    config = prisme_lite.load_config({"port": "7003"}, environ=environ)
    assert config["port"] == 7003  # flag
    assert config["rate_limit"] == 20  # environment
    assert config["host"] == "0.0.0.0"  # file
    assert config["origins"] == ["a.example", "*.b.example"]
    assert config["proxy_hops"] == 1  # default
    assert prisme_lite.load_config({"config": str(path)}, environ={})["port"] == 7001


def test_environment_values_are_parsed():
    environ = {"PRISME_TRUST_PROXY": "yes", "PRISME_ORIGINS": "Blog.Example.com, *.shop.example", "PRISME_PIN_CPU": "0"}
    config = prisme_lite.load_config({}, environ=environ)
    assert (config["trust_proxy"], config["pin_cpu"]) == (True, False)
    assert config["origins"] == ["blog.example.com", "*.shop.example"]


def test_the_example_file_lists_every_setting_with_its_default():
    with open(EXAMPLE, "rb") as file:
        example = tomllib.load(file)
    assert example == {key: setting.default for key, setting in prisme_lite.SETTINGS.items()}
    text = EXAMPLE.read_text()
    for key in prisme_lite.SETTINGS:  # and one line of why above each key
        before = text[: text.index(f"\n{key} = ")].rsplit("\n", 1)[-1]
        assert before.startswith("# ") and len(before) > 20, key


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({}, {"PRISME_RATE_LIMIT": "abc"}, "rate_limit (from PRISME_RATE_LIMIT) must be an integer, got 'abc'"),
        ({"port": "70000"}, {}, "port (from --port) must be between 0 and 65535, got 70000"),
        ({"rate_limit": "-1"}, {}, "rate_limit (from --rate-limit) must be at least 0, got -1"),
        ({"trust_proxy": "maybe"}, {}, "trust_proxy (from --trust-proxy) must be true or false, got 'maybe'"),
        ({"synchronous": "off"}, {}, "synchronous (from --synchronous) must be one of normal, full, got 'off'"),
        ({}, {"PRISME_ORIGINS": "good.example,bad host"}, "origins (from PRISME_ORIGINS): 'bad host' is not a host"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(flags, environ, message):
    with pytest.raises(prisme_lite.ConfigError) as error:
        prisme_lite.load_config(flags, environ=environ)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("colour = 'blue'\n", "colour (from {path}) is not a setting"),
        ("port = '8000'\n", "port (from {path}) must be an integer, got '8000'"),
        ("trust_proxy = 1\n", "trust_proxy (from {path}) must be true or false, got 1"),
        ("origins = 'a.example'\n", "origins (from {path}) must be a list of strings"),
        ("port = \n", "config file {path}: "),
    ],
)
def test_bad_files_name_the_key(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(prisme_lite.ConfigError) as error:
        prisme_lite.load_config({"config": str(path)}, environ={})
    assert str(error.value).startswith(message.format(path=path))


def test_a_missing_config_file_is_one_line(tmp_path):
    with pytest.raises(prisme_lite.ConfigError, match="config file .*nope.toml: No such file or directory"):
        prisme_lite.load_config({"config": str(tmp_path / "nope.toml")}, environ={})


def test_the_command_line_says_a_bad_value_in_one_line_and_exits_2(tmp_path, capsys):
    assert prisme_lite.main(["serve", "--db", str(tmp_path / "x.db"), "--rate-limit", "lots"]) == 2
    err = capsys.readouterr().err
    assert err == "prisme-lite: rate_limit (from --rate-limit) must be an integer, got 'lots'\n"
