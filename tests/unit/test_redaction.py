"""Passwords inside URLs: redacted wherever a config is logged, and split off the URL that travels."""

from __future__ import annotations

from empathy_distill.tracking import redact_urls, redacted, without_password


def test_url_passwords_are_redacted_in_any_string_of_a_config():
    tree = {
        "registry": {"history": "postgresql://ed:s3cr%40t@db.internal:5432/registry", "model_name": "m"},
        "teacher": {"base_url": "https://user:tok@llm.internal/v1", "api_key_env": "OPENAI_API_KEY"},
        "notes": ["see postgresql://a:b@h/d and http://plain.host/x"],
    }
    out = redacted(tree)
    assert out["registry"]["history"] == "postgresql://ed:<redacted>@db.internal:5432/registry"
    assert out["teacher"]["base_url"] == "https://user:<redacted>@llm.internal/v1"
    assert out["teacher"]["api_key_env"] == "OPENAI_API_KEY"
    assert out["notes"] == ["see postgresql://a:<redacted>@h/d and http://plain.host/x"]
    assert redact_urls("postgresql://ed@db/registry") == "postgresql://ed@db/registry"  # no password, nothing to hide


def test_the_password_is_split_off_the_url_that_travels():
    assert without_password("postgresql://ed:s3cr%40t@db.internal:5432/registry") == (
        "postgresql://ed@db.internal:5432/registry",
        "s3cr@t",
    )
    assert without_password("postgresql://ed@db/registry") == ("postgresql://ed@db/registry", None)
    assert without_password("/srv/history.sqlite") == ("/srv/history.sqlite", None)
    assert without_password(None) == (None, None)
