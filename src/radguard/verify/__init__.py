"""Prove it: scan de-identified outputs for anything identifying that is left."""

from radguard.verify.core import Finding, VerifyReport, verify
from radguard.verify.identifiers import Category, IdentifierSet, normalize

__all__ = ["Category", "Finding", "IdentifierSet", "VerifyReport", "normalize", "verify"]
