"""The standard's tables: PS3.15 Table E.1-1, its options, IOD attribute types, safe private."""

from radguard.profile.iod import IodTypes, load_iod_types, resolve
from radguard.profile.options import BASIC_PROFILE_CODE, Action, Option
from radguard.profile.safe_private import SafePrivate, load_safe_private
from radguard.profile.table import ProfileTable, Row, load_table

__all__ = [
    "BASIC_PROFILE_CODE",
    "Action",
    "IodTypes",
    "Option",
    "ProfileTable",
    "Row",
    "SafePrivate",
    "load_iod_types",
    "load_safe_private",
    "load_table",
    "resolve",
]
