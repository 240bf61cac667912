"""CleanConfig: validation messages, YAML mapping, frozen and comparable."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.clean import CleanConfig
from pipelines.config import ConfigError


def test_defaults():
    config = CleanConfig()
    assert (config.min_chars, config.max_chars, config.strip_html, config.strip_control) == (2, 20000, True, True)
    assert (config.drop_patterns, config.replace_patterns, config.allowed_languages) == ((), (), ())


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CleanConfig().min_chars = 5


@pytest.mark.parametrize("kwargs, message", [
    ({"drop_patterns": (("lorem", "lorem("),)},
     "clean.drop_patterns[lorem]: regex 'lorem(' does not compile: missing ), unterminated subpattern at position 5"),
    ({"replace_patterns": (("year", "[0-9", ""),)},
     "clean.replace_patterns[year]: regex '[0-9' does not compile: unterminated character set at position 0"),
    ({"replace_patterns": (("year", r"(\d{4})", r"\2"),)},
     r"clean.replace_patterns[year]: replacement '\\2': unknown group \2 (write \\ for a literal backslash)"),
    ({"replace_patterns": (("year", r"(?P<y>\d{4})", r"\g<z>"),)},
     r"clean.replace_patterns[year]: replacement '\\g<z>': unknown group \g<z> (write \\ for a literal backslash)"),
    ({"replace_patterns": (("year", r"\d{4}", r"\q"),)},
     r"clean.replace_patterns[year]: replacement '\\q': bad escape \q (write \\ for a literal backslash)"),
    ({"drop_patterns": (("Bad-Name", "x"),)},
     "clean.drop_patterns: name 'Bad-Name' must match ^[a-z][a-z0-9_]{0,62}$ (it becomes a reason)"),
    ({"drop_patterns": (("a", "x"), ("a", "y"))},
     "clean.drop_patterns: duplicate names in ['a', 'a']; each rule needs its own name"),
    ({"drop_patterns": (("a", "x", "extra"),)},
     "clean.drop_patterns: ('a', 'x', 'extra') is not a (name, regex) tuple of strings"),
    ({"drop_patterns": ("x",)}, "clean.drop_patterns: 'x' is not a (name, regex) tuple of strings"),
    ({"min_chars": 0}, "clean: need 1 <= min_chars (0) <= max_chars (20000)"),
    ({"min_chars": 10, "max_chars": 5}, "clean: need 1 <= min_chars (10) <= max_chars (5)"),
    ({"max_chars": "100"}, "clean.max_chars='100': use an integer"),
    ({"allowed_languages": ("zh", "fr")},
     "clean.allowed_languages: unknown ['fr']; use ['zh', 'en', 'other'] or [] for any"),
])
def test_invalid_config_names_the_problem(kwargs, message):
    with pytest.raises(ConfigError) as info:
        CleanConfig(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_valid_replacement_templates_are_accepted():
    config = CleanConfig(replace_patterns=(("a", r"(?P<y>\d{4})-(\d\d)", r"\g<y>/\2\n\g<1>\\"),))
    assert config.replace_patterns == (("a", r"(?P<y>\d{4})-(\d\d)", r"\g<y>/\2\n\g<1>\\"),)


def test_from_mapping_accepts_lists_and_mappings():
    config = CleanConfig.from_mapping({
        "min_chars": 20,
        "drop_patterns": [{"name": "lorem", "regex": "(?i)lorem ipsum"}, ["todo", "TODO"]],
        "replace_patterns": [["nbsp", "\u00a0+", " "], {"name": "tab", "regex": "\t", "replacement": " "}],
        "allowed_languages": ["zh", "en"],
    })
    assert config == CleanConfig(
        min_chars=20,
        drop_patterns=(("lorem", "(?i)lorem ipsum"), ("todo", "TODO")),
        replace_patterns=(("nbsp", "\u00a0+", " "), ("tab", "\t", " ")),
        allowed_languages=("zh", "en"),
    )
    assert CleanConfig.from_mapping(None) == CleanConfig()
    assert CleanConfig.from_mapping({"drop_patterns": None}) == CleanConfig()


@pytest.mark.parametrize("values, message", [
    ({"min_char": 3}, "clean: unknown key(s) ['min_char']; known: ['min_chars', 'max_chars', 'strip_html', "
                      "'strip_control', 'drop_patterns', 'replace_patterns', 'allowed_languages']"),
    ({"drop_patterns": [{"name": "a"}]},
     "clean.drop_patterns[0]: need exactly the keys ['name', 'regex'] (missing ['regex'], unknown [])"),
    ({"drop_patterns": [{"name": "a", "regex": "b", "flags": "i"}]},
     "clean.drop_patterns[0]: need exactly the keys ['name', 'regex'] (missing [], unknown ['flags'])"),
    ({"replace_patterns": ["x"]},
     "clean.replace_patterns[0]: use a list ['name', 'regex', 'replacement'] or a mapping with those keys"),
])
def test_from_mapping_rejects_unknown_shapes(values, message):
    with pytest.raises(ConfigError) as info:
        CleanConfig.from_mapping(values)
    assert str(info.value) == message
