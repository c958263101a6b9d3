"""radguard: a privacy gateway for medical imaging AI.

De-identify DICOM per PS3.15 Annex E with keyed pseudonyms, prove what is left, govern every
release, and vet the models trained on the data.
"""

__version__ = "0.1.0"

from radguard.errors import (
    KeyFileError,
    PolicyError,
    RadguardError,
    Rejected,
    UnreadableInput,
    VaultError,
)
from radguard.settings import Policy, check_policy, load_policy

__all__ = [
    "KeyFileError",
    "Policy",
    "PolicyError",
    "RadguardError",
    "Rejected",
    "UnreadableInput",
    "VaultError",
    "__version__",
    "check_policy",
    "load_policy",
]
