"""The data the repository ships is what data/README.md says it is (sizes and checksums)."""

import hashlib
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"


def test_every_shipped_file_matches_its_checksum():
    listed = re.findall(r"\| `([^`]+)` \|[^|]*\| (\d+) \| `([0-9a-f]{64})` \|", (DATA / "README.md").read_text())
    assert len(listed) == 4
    for name, size, digest in listed:
        path = DATA / name
        assert path.is_file(), name
        assert path.stat().st_size == int(size), name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
