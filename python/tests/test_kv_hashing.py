"""Block hash v1 against the golden vectors shared with the .NET tests (tests/vectors/block_hashes.json)."""
import json
import os

import pytest

from kvasir.kv import PrefixCache, block_key, compute_block_hashes, hash_block
from kvasir.kv.errors import ConfigInvalidError

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "vectors", "block_hashes.json")
with open(VECTORS, encoding="utf-8") as _f:
    DOC = json.load(_f)


def test_the_vector_file_is_version_1_and_covers_the_spec_cases():
    assert DOC["version"] == 1
    sizes = {c["block_size"] for c in DOC["cases"]}
    assert {1, 16, 256} <= sizes
    assert any(c["parent"] for c in DOC["cases"]) and any(not c["tokens"] for c in DOC["cases"])


@pytest.mark.parametrize("case", DOC["cases"], ids=[c["name"] for c in DOC["cases"]])
def test_compute_block_hashes_equals_the_golden_vector(case):
    hashes = compute_block_hashes(case["tokens"], case["block_size"], case["extra_keys"], case["parent"])
    assert hashes == case["hashes"]
    assert [block_key(h) for h in hashes] == case["keys"]
    assert all(len(k.encode()) == 69 for k in case["keys"])
    assert len(hashes) == len(case["tokens"]) // case["block_size"]
    cache = PrefixCache(block_size=case["block_size"], extra_keys=case["extra_keys"])
    assert cache.compute_block_hashes(case["tokens"], parent=case["parent"]) == case["hashes"]
    if hashes:   # the one-block call chains the same way
        parent = case["parent"]
        bs = case["block_size"]
        for i, h in enumerate(hashes):
            assert hash_block(parent, case["tokens"][i * bs:(i + 1) * bs], case["extra_keys"]) == h
            parent = h


@pytest.mark.parametrize("case", DOC["invalid"], ids=[c["name"] for c in DOC["invalid"]])
def test_invalid_inputs_raise(case):
    with pytest.raises(ValueError):
        compute_block_hashes(case["tokens"], case["block_size"])


def test_a_bad_block_size_in_the_cache_is_config_invalid():
    with pytest.raises(ConfigInvalidError) as e:
        PrefixCache(block_size=0)
    assert e.value.to_dict()["code"] == "KV_CONFIG_INVALID"
