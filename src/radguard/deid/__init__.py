"""The header de-identification engine, keyed pseudonyms, free-text cleaning and the vault."""

from radguard.deid.engine import Engine, Outcome, TraceLine, mask
from radguard.deid.keys import Keyring, default_key_path, load_key, new_key_file
from radguard.deid.pseudonym import Pseudonymizer
from radguard.deid.text import TextCleaner
from radguard.deid.vault import Vault

__all__ = [
    "Engine",
    "Keyring",
    "Outcome",
    "Pseudonymizer",
    "TextCleaner",
    "TraceLine",
    "Vault",
    "default_key_path",
    "load_key",
    "mask",
    "new_key_file",
]
