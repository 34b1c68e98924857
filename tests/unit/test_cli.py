"""The command's surface: every verb has a description and examples in --help, and takes --config, --set
and -v the same way (one parent parser); a verb that needs a config says so in one line."""

from __future__ import annotations

import pytest

from app.cli import VERBS, build_parser


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_explains_itself_with_examples(verb, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([verb, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 8, text  # a sentence, not a label
    examples = text.split("examples:\n", 1)[1]
    assert f"empathy-distill {verb}" in examples or any(
        f"empathy-distill {a}" in examples for a in VERBS[verb]["aliases"]
    )
    for option in ("--config", "--set", "-v, --verbose"):
        assert option in text


def test_the_common_options_parse_the_same_for_every_verb():
    required = {
        "lineage": ["models:/m@champion"],
        "promote": ["--version", "1"],
        "ingest": ["--data", "x", "--out", "y"],
        "calibrate": ["--data", "x"],
        "deploy": ["vllm"],
    }
    for verb in VERBS:
        args = build_parser().parse_args(
            [verb, *required.get(verb, []), "--config", "c.yaml", "--set", "a=1", "--set", "b=2", "-v"]
        )
        assert (args.config, args.set, args.verbose) == ("c.yaml", ["a=1", "b=2"], True)


def test_run_is_the_distill_verb_and_a_missing_config_is_one_line(capsys):
    assert build_parser().parse_args(["run", "--config", "c.yaml"]).func is VERBS["distill"]["func"]
    with pytest.raises(SystemExit) as done:
        from app.cli import main

        main(["distill"])
    assert done.value.code == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == "empathy-distill: error: distill needs --config, e.g. --config configs/demo.yaml"
    )


def test_an_error_quoting_control_characters_stays_one_line(tmp_path, capsys):
    """Found by the ingestion fuzzer: a byte flipped into a vertical tab in the header, quoted in the error."""
    from app.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"d\x0balog_id;situation\x0c;x\r\n1;2;3\n")
    assert main(["ingest", "--data", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "d\\x0balog_id" in err, err
