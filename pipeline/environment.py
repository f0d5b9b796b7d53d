"""The environment variables ``Settings.from_env`` reads, documented for ``dpu --help``.

Each variable is ``DPU_`` and its field's name in capitals; its help is the field's docstring in
``pipeline/settings.py`` and its default the field's default, so the list cannot drift from the
settings.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect

from pipeline.settings import Settings


def field_docstrings() -> dict[str, str]:
    """Each field of ``Settings`` and the docstring below it, on one line."""
    try:
        body = ast.parse(inspect.getsource(Settings)).body[0].body
    except OSError:  # installed without its sources: the names and defaults still show
        return {}
    docs = {}
    for field, doc in zip(body, body[1:]):
        if (isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
            docs[field.target.id] = " ".join(doc.value.value.replace("``", "").split())
    return docs


KAFKA_SECURITY = (
    ("security_protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.  [default: PLAINTEXT]"),
    ("sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.  [default: PLAIN]"),
    ("sasl_username", "SASL user name."),
    ("sasl_password", "SASL password."),
    ("ssl_cafile", "CA certificates that sign the brokers' certificates (TLS)."),
    ("ssl_certfile", "Client certificate (TLS)."),
    ("ssl_keyfile", "The client certificate's private key."),
    ("ssl_password", "The private key's password."),
)
"""``DPU_KAFKA_<name>``: the settings ``pipeline.kafka_auth`` accepts, used by every client."""


def environment_variables() -> list[tuple[str, str]]:
    """(variable, help with its default) for every variable the settings read."""
    docs, defaults = field_docstrings(), Settings()
    rows = []
    for field in dataclasses.fields(Settings):
        if field.name == "kafka_extra":
            continue
        default = str(getattr(defaults, field.name))
        rows.append((f"DPU_{field.name.upper()}",
                     docs.get(field.name, "") + (f"  [default: {default}]" if default else "")))
    rows += [(f"DPU_KAFKA_{name.upper()}", text) for name, text in KAFKA_SECURITY]
    return rows
