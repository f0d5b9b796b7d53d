"""Kafka SASL/TLS from the environment, the same for Faust and for every plain aiokafka client.

``DPU_KAFKA_SECURITY_PROTOCOL`` (``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``),
``DPU_KAFKA_SASL_MECHANISM`` (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``),
``DPU_KAFKA_SASL_USERNAME``, ``DPU_KAFKA_SASL_PASSWORD``, and for TLS ``DPU_KAFKA_SSL_CAFILE``,
``DPU_KAFKA_SSL_CERTFILE``, ``DPU_KAFKA_SSL_KEYFILE``, ``DPU_KAFKA_SSL_PASSWORD``.
"""

from __future__ import annotations

import ssl
import logging
from typing import Any, Mapping

from pipeline.settings import Settings, SettingsError

KNOWN = frozenset({"security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
                   "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"})
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _checked(extra: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(extra) - KNOWN)
    if unknown:
        names = ", ".join(f"DPU_KAFKA_{k.upper()}" for k in unknown)
        raise SettingsError(f"unknown Kafka setting(s) {names}; known: "
                            + ", ".join(f"DPU_KAFKA_{k.upper()}" for k in sorted(KNOWN)))
    opts = dict(extra)
    protocol = opts.setdefault("security_protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise SettingsError(f"DPU_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                            f"got {protocol!r}")
    opts["security_protocol"] = protocol
    if protocol.startswith("SASL"):
        mechanism = opts.setdefault("sasl_mechanism", "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise SettingsError(f"DPU_KAFKA_SASL_MECHANISM must be one of "
                                f"{', '.join(MECHANISMS)}, got {mechanism!r}")
        opts["sasl_mechanism"] = mechanism
        if not opts.get("sasl_username") or "sasl_password" not in opts:
            raise SettingsError("SASL needs DPU_KAFKA_SASL_USERNAME and DPU_KAFKA_SASL_PASSWORD")
    return opts


def _ssl_context(opts: Mapping[str, str]) -> ssl.SSLContext | None:
    if not opts["security_protocol"].endswith("SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=opts.get("ssl_cafile"))
        if opts.get("ssl_certfile"):
            context.load_cert_chain(opts["ssl_certfile"], opts.get("ssl_keyfile"),
                                    opts.get("ssl_password"))
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"Kafka TLS files unusable: {exc}") from None
    return context


def _once_in_the_clear(record: logging.LogRecord) -> bool:
    return "in the clear" not in record.getMessage()


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka producer, consumer or admin client."""
    opts = _checked(settings.kafka_extra)
    if opts["security_protocol"] == "SASL_PLAINTEXT":
        # aiokafka warns on every connection; the choice was the user's, once is enough.
        logging.getLogger("aiokafka.conn").addFilter(_once_in_the_clear)
    out: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap,
                           "security_protocol": opts["security_protocol"]}
    context = _ssl_context(opts)
    if context is not None:
        out["ssl_context"] = context
    if opts["security_protocol"].startswith("SASL"):
        out.update(sasl_mechanism=opts["sasl_mechanism"],
                   sasl_plain_username=opts["sasl_username"],
                   sasl_plain_password=opts["sasl_password"])
    return out


def faust_credentials(settings: Settings):
    """Faust's ``broker_credentials`` for the same settings (None for plaintext)."""
    import faust

    opts = _checked(settings.kafka_extra)
    protocol = opts["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(opts)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=opts["sasl_username"], password=opts["sasl_password"],
                                 mechanism=opts["sasl_mechanism"], ssl_context=context)
