"""Secret masking, as CI systems do it: the values of environment variables whose names look
secret are replaced by ``***`` in everything xstash writes or reports (failure reports, the
captured sections it adds, JUnit properties, run records, report files, progress lines). The
tool's own ``stdout.log``/``stderr.log`` are left as the tool wrote them.

A name looks secret when it contains TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL, PRIVATE or KEY
(any case), or is listed in the ini setting ``xstash_secret_env``. Values shorter than
``MIN_LENGTH`` are not masked, nor flags such as ``true``: replacing every ``1`` or ``true``
in a report would hide more than it protects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_ENV_HELP = (
    "names of more environment variables whose values xstash masks as *** in everything it "
    "writes or reports (besides names containing TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL, "
    "PRIVATE or KEY)"
)
MASK = "***"
MIN_LENGTH = 4
# Values that say nothing secret, but would mask every occurrence of a common word.
_NOT_SECRET = {"true", "false", "none", "null", "unset", "empty"}
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|KEY", re.IGNORECASE)


def secret_values(environ: Mapping[str, str], extra_names: Iterable[str] = ()) -> list[str]:
    """The values to mask: of secret-looking names and of ``extra_names``, longest first."""
    extra = set(extra_names)
    values = {
        value
        for name, value in environ.items()
        if (name in extra or _SECRET_NAME.search(name))
        and len(value) >= MIN_LENGTH
        and value.strip().lower() not in _NOT_SECRET
    }
    return sorted(values, key=len, reverse=True)


class Masker:
    """Replaces the session's secret values; one per pytest process (see :func:`configure`)."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def text(self, text: str) -> str:
        return text if self.pattern is None else self.pattern.sub(MASK, text)

    def data(self, value: Any) -> Any:
        """``value`` with every string in it masked (mappings' keys too); the same object when
        nothing needs masking."""
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.data(v) for v in value)
        return value


_masker = Masker(secret_values(os.environ))


def configure(extra_names: Iterable[str]) -> Masker:
    """Read the secrets from the environment pytest runs in (done in ``pytest_configure``)."""
    global _masker
    _masker = Masker(secret_values(os.environ, extra_names))
    return _masker


def mask(text: str) -> str:
    return _masker.text(text)


def mask_data(value: Any) -> Any:
    return _masker.data(value)
