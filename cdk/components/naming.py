"""Physical names that must be unique in an account or region: derived from the stack name, within limits.

Most resources get a name CloudFormation generates from the stack name. A few need one set by the stack:
the CloudFront Function (its name is unique per account, all regions: CDK's default, region + construct
path, is the same for every stack name and a second stack fails with FunctionAlreadyExists), the Valkey
cache (unique per region, at most 40 characters). Two stacks in one account differ in stack name (and,
for global resources, possibly only in region), so the name is built from both; a name too long for its
limit keeps a readable prefix and ends in a hash of the whole, so two long stack names never collide.
"""

from __future__ import annotations

import hashlib
import re

HASH_LENGTH = 8


def physical_name(*parts: str, limit: int, lowercase: bool = False) -> str:
    """``parts`` joined by ``-``, with characters other than letters, digits and ``-`` dropped; cut to
    ``limit`` with a hash of the full name at the end when it is longer."""
    full = "-".join(re.sub(r"[^A-Za-z0-9-]+", "", part) for part in parts)
    full = re.sub(r"-{2,}", "-", full).strip("-")
    if lowercase:
        full = full.lower()
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:HASH_LENGTH]
    return f"{full[: limit - HASH_LENGTH - 1].rstrip('-')}-{digest}"
