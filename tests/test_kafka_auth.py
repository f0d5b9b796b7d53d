"""Kafka SASL/TLS settings from the environment (pure: no broker)."""

from __future__ import annotations

import faust
import pytest

from pipeline.kafka_auth import client_options, faust_credentials
from pipeline.settings import Settings, SettingsError


def settings(**env: str) -> Settings:
    return Settings.from_env({f"DPU_KAFKA_{k.upper()}": v for k, v in env.items()})


def test_plaintext_by_default():
    s = settings()
    assert client_options(s) == {"bootstrap_servers": "127.0.0.1:9092",
                                 "security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None


def test_sasl_reaches_aiokafka_and_faust_alike():
    s = settings(security_protocol="sasl_plaintext", sasl_mechanism="scram-sha-256",
                 sasl_username="u", sasl_password="p")
    opts = client_options(s)
    assert (opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"],
            opts["sasl_plain_password"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-256", "u", "p")
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("u", "p", "SCRAM-SHA-256")


def test_sasl_ssl_builds_a_tls_context():
    s = settings(security_protocol="SASL_SSL", sasl_username="u", sasl_password="p")
    assert client_options(s)["ssl_context"] is not None
    assert faust_credentials(s).protocol.value == "SASL_SSL"


@pytest.mark.parametrize("env, fragment", [
    ({"sasl_user": "u"}, "unknown Kafka setting(s) DPU_KAFKA_SASL_USER"),
    ({"security_protocol": "TLS"}, "must be one of"),
    ({"security_protocol": "SASL_PLAINTEXT"}, "needs DPU_KAFKA_SASL_USERNAME"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent.pem"}, "TLS files unusable"),
])
def test_unusable_settings_are_one_line_errors(env, fragment):
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        client_options(settings(**env))
