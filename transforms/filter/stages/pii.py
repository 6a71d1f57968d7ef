"""``pii``: replace e-mail addresses and public IP addresses (datatrove's PIIFormatter, with its replacements).

datatrove cycles through the replacement strings across all the documents one task sees, so which string a document
gets depends on how the corpus was split into tasks. Here the cycle restarts with every document: the result depends
on the document alone (the same on any runner and worker count), and equals datatrove's formatter applied to that
document alone, which the tests check document by document. Documents are never dropped; a changed one is counted
as modified by ``pii`` (its original under ``modified/`` with ``--emit-modified``), and the manifest counts the
replacements under ``counts.stage_counts`` (``pii/email``, ``pii/ip``).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from transforms.filter.stage import KEPT, STRINGS, FilterStage, Stage, StageRule, Verdict
from transforms.recipe.errors import RecipeError

EMAIL = "email"
IP = "ip"


class Redactor:
    """One kind of PII: its pattern, an optional check of each match, and the replacements, cycled per document."""

    def __init__(self, kind: str, pattern: re.Pattern, replacements: tuple[str, ...],
                 valid: Callable[[str], bool] | None, needle: str | None) -> None:
        self.kind = kind  # how the manifest counts its replacements: pii/<kind>
        self.pattern = pattern
        self.replacements = replacements
        self.valid = valid
        self.needle = needle  # a substring every match contains: texts without it are skipped without a search

    def redact(self, text: str) -> tuple[str, int]:
        """(the text with every valid match replaced, the replacements taken in turn from the first; how many)."""
        if self.needle is not None and self.needle not in text:
            return text, 0
        replaced = 0

        def replace(match: re.Match) -> str:
            nonlocal replaced
            found = match.group(0)
            if self.valid is not None and not self.valid(found):
                return found
            replaced += 1
            return self.replacements[(replaced - 1) % len(self.replacements)]

        return self.pattern.sub(replace, text), replaced


class PiiRule(StageRule):
    """E-mail addresses, then IP addresses, as datatrove's PIIFormatter orders them."""

    def __init__(self, redactors: list[Redactor]) -> None:
        self.redactors = redactors

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """Always kept; the redacted text and the replacements by kind where anything was replaced."""
        redacted = text
        found: dict[str, int] = {}
        for redactor in self.redactors:
            redacted, n = redactor.redact(redacted)
            if n:
                found[redactor.kind] = n
        return Verdict(True, text=redacted if redacted != text else None, counts=found) if found else KEPT


class PiiStage(FilterStage):
    """The ``pii`` stage: datatrove's patterns and its public-IP check, one implementation for both engines."""

    name = "pii"
    datatrove_class = "datatrove.pipeline.formatters.PIIFormatter"
    params = {
        "remove_emails": True,
        "remove_ips": True,
        "only_remove_public_ips": True,
        "email_replacement": ("email@example.com", "firstname.lastname@example.org"),
        "ip_replacement": ("22.214.171.124", "126.96.36.199", "188.8.131.52", "184.108.40.206", "220.127.116.11",
                           "18.104.22.168"),
    }
    kinds = {"email_replacement": STRINGS, "ip_replacement": STRINGS}
    doc = "replace e-mail addresses and public IP addresses (datatrove's PIIFormatter; the text changes)"
    listed = 9

    def validate(self, params: dict[str, Any], where: str) -> None:
        """Each replacement list is non-empty."""
        for key in ("email_replacement", "ip_replacement"):
            if not params[key]:
                raise RecipeError(f"{where} (pii): '{key}' must list at least one replacement")

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """datatrove's own patterns and IP check (taken from its formatter), the cycle restarted per document."""
        from datatrove.pipeline.formatters.pii import public_ip_validator

        formatter = self.datatrove_filter(stage)
        p = stage.params
        redactors = []
        if p["remove_emails"]:
            redactors.append(Redactor(EMAIL, formatter.emails_replacer.regex, tuple(p["email_replacement"]), None, "@"))
        if p["remove_ips"]:
            public_only = p["only_remove_public_ips"]
            redactors.append(Redactor(IP, formatter.ip_replacer.regex, tuple(p["ip_replacement"]),
                                      lambda ip: public_ip_validator(ip, public_only=public_only), "."))
        return PiiRule(redactors)


STAGE = PiiStage()
