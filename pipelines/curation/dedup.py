"""Stages 4 and 5: exact and near-duplicate removal.

Exact: documents whose normalised text (lower case, single spaces) hashes the same;
the first one seen stays.

Near: MinHash over word (or character) n-grams, LSH banding, verification, clusters.

- Shingles: each word is hashed once with CRC32 (C speed), n-gram hashes are rolled
  from word hashes with numpy, so no Python-level work per shingle.
- Signatures: ``num_perm = bands * rows`` universal hashes ``(a*h + b) mod p`` with
  32-bit inputs and p = 2^32 + 15, so every product fits in uint64; the minimum per
  permutation is kept as uint32 (4 bytes x num_perm per document: the memory bound).
- LSH: per band, rows are grouped with one ``np.unique`` over the band's bytes.
- Verification: a candidate joins its bucket's first member's cluster only if their
  signatures agree on at least ``threshold`` of the permutations (estimated Jaccard).
- Clusters: union-find; the member that came first stays, the others are dropped
  with ``near_duplicate_of`` naming it.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

import numpy as np

_PRIME = np.uint64((1 << 32) + 15)
_TOKEN = re.compile(r"\w+", re.UNICODE)


def normalised_for_hash(text: str) -> str:
    return " ".join(text.lower().split())


def exact_hash(text: str) -> str:
    return hashlib.blake2b(normalised_for_hash(text).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class MinHashParams:
    ngram: int = 3
    bands: int = 32
    rows: int = 4
    threshold: float = 0.5
    unit: str = "word"  # or "char"
    seed: int = 42

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 1 << 32, size=self.num_perm, dtype=np.uint64)
        b = rng.integers(0, 1 << 32, size=self.num_perm, dtype=np.uint64)
        return a, b

    def memory_estimate_bytes(self, n_docs: int) -> int:
        """Signatures (4 bytes x num_perm) plus per-band grouping work and union-find arrays."""
        signatures = n_docs * self.num_perm * 4
        grouping = n_docs * (self.rows * 4 + 16) * 2  # one band's keys, inverse and order at a time
        return signatures + grouping + n_docs * 8 * 3


def shingle_hashes(text: str, params: MinHashParams) -> np.ndarray:
    """32-bit hashes of the document's n-grams (unique)."""
    if params.unit == "char":
        flat = " ".join(text.lower().split())
        units = [flat[i : i + params.ngram] for i in range(max(len(flat) - params.ngram + 1, 1))]
        hashes = np.fromiter((zlib.crc32(u.encode()) for u in units), dtype=np.uint64, count=len(units))
        return np.unique(hashes)
    tokens = _TOKEN.findall(text.lower())
    if not tokens:
        return np.zeros(1, dtype=np.uint64)
    combined = word_ngram_hashes(tokens, min(params.ngram, len(tokens)))
    with np.errstate(over="ignore"):
        folded = (combined ^ (combined >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return np.unique(folded)


def word_ngram_hashes(tokens: list[str], n: int, step: int = 0x9E3779B97F4A7C15) -> np.ndarray:
    """64-bit hashes of every n-gram of ``tokens``, in order (empty when there are fewer).

    Each word is hashed once with CRC32; an n-gram's hash is rolled from its words'
    hashes as sum(w[i+k] * step^k) mod 2^64, all in numpy.
    """
    if len(tokens) < n:
        return np.zeros(0, dtype=np.uint64)
    word = np.fromiter((zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens))
    combined = np.zeros(len(word) - n + 1, dtype=np.uint64)
    multiplier = np.uint64(1)
    with np.errstate(over="ignore"):
        for k in range(n):
            combined += word[k : len(word) - n + 1 + k] * multiplier
            multiplier *= np.uint64(step)
    return combined


def minhash_signature(text: str, params: MinHashParams, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    hashes = shingle_hashes(text, params)
    # (n_shingles, 1) x (num_perm,) -> (n_shingles, num_perm); 32-bit x 32-bit fits in uint64.
    permuted = (hashes[:, None] * a[None, :] + b[None, :]) % _PRIME
    return permuted.min(axis=0).astype(np.uint32)


def signatures_for(texts: list[str], params: MinHashParams) -> np.ndarray:
    a, b = params.coefficients()
    out = np.empty((len(texts), params.num_perm), dtype=np.uint32)
    for i, text in enumerate(texts):
        out[i] = minhash_signature(text, params, a, b)
    return out


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return int(root)

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            # The smaller index is the root: the earliest document stays.
            if rx < ry:
                self.parent[ry] = rx
            else:
                self.parent[rx] = ry


@dataclass
class NearDupResult:
    keep: np.ndarray  # bool per document
    duplicate_of: np.ndarray  # index of the kept representative, -1 when kept
    cluster_sizes: list[int]
    candidate_pairs: int
    verified_pairs: int


def find_near_duplicates(signatures: np.ndarray, params: MinHashParams) -> NearDupResult:
    n = len(signatures)
    uf = UnionFind(n)
    candidates = verified = 0
    for band in range(params.bands):
        keys = np.ascontiguousarray(signatures[:, band * params.rows : (band + 1) * params.rows])
        view = keys.view(np.dtype((np.void, keys.dtype.itemsize * params.rows))).ravel()
        _, inverse, counts = np.unique(view, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)
        if len(shared) == 0:
            continue
        order = shared[np.argsort(inverse[shared], kind="stable")]
        groups = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
        for group in groups:
            first = group[0]
            for other in group[1:]:
                candidates += 1
                if uf.find(int(other)) == uf.find(int(first)):
                    continue
                agreement = np.count_nonzero(signatures[first] == signatures[other]) / params.num_perm
                if agreement >= params.threshold:
                    verified += 1
                    uf.union(int(first), int(other))
    roots = np.fromiter((uf.find(i) for i in range(n)), dtype=np.int64, count=n)
    keep = roots == np.arange(n)
    duplicate_of = np.where(keep, -1, roots)
    _, sizes = np.unique(roots, return_counts=True)
    return NearDupResult(keep, duplicate_of, sorted(int(s) for s in sizes if s > 1), candidates, verified)
