"""state/packed.py's one deflate stream: every block packed through it, its state allocated once a process.

Counted with tracemalloc (zlib allocates through Python's raw allocator, which it traces): a new
compressor a block (``zlib.compress``, as before) allocates about 290 KiB at each pack, most of it the
deflate state (window, hash chains, pending buffer: four blocks of 64 KiB, below glibc's mmap threshold
so from the heap); in a running executor the first of them took fresh pages that stayed resident under
the packed block kept after it, part of the soak's step at its 96th close (docs/benchmarks.md, "The first
pack's step"). The stream made once (``take_packer``, called by ``tradeexecutor start``)
allocates only its output at a pack.
"""

from __future__ import annotations

import pickle
import random
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from test_packed_positions import _backtest
from tradeexecutor.state import PackedPositions, Position
from tradeexecutor.state import packed as packed_module

KIB = 1024


def _peak(pack: Callable[[bytes], bytes], data: bytes) -> int:
    """Bytes allocated at the peak of ``pack(data)``, beyond what was allocated before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pack(data)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _positions(folder: Path) -> list[Position]:
    state, _ = _backtest(folder, 1000)
    positions = list(state.portfolio.closed_positions)
    assert len(positions) >= 90
    return positions


def test_every_block_goes_through_one_stream_that_allocates_no_compressor_at_a_pack(tmp_path: Path) -> None:
    positions = _positions(tmp_path)
    stream = packed_module.take_packer()
    state = stream._stream
    closed = PackedPositions(positions, keep=4, block=8)
    assert closed.packed >= 80
    assert packed_module.take_packer() is stream and stream._stream is state  # ten packs later: the same stream
    block = pickle.dumps(positions[:64], protocol=pickle.HIGHEST_PROTOCOL)
    assert _peak(stream.pack, block) < 96 * KIB  # its output buffers (32 KiB each) and the result
    assert _peak(lambda data: zlib.compress(data, 1), block) >= 256 * KIB  # what a compressor a block took each time


def test_each_block_reads_back_alone_from_one_stream(tmp_path: Path) -> None:
    """Blocks of one stream, each ending on a full flush, read back in any order and with no other block,
    equal to what was packed; they are no bigger than separately compressed blocks (1 % allowed)."""
    positions = _positions(tmp_path)
    closed = PackedPositions(positions, keep=4, block=8)
    for number in reversed(range(closed.packed // 8)):  # newest first: no block needs the ones before it
        assert packed_module._unpack(closed._blocks[number]) == positions[number * 8:(number + 1) * 8]
    separate = sum(len(zlib.compress(pickle.dumps(positions[i:i + 8], protocol=pickle.HIGHEST_PROTOCOL), 1))
                   for i in range(0, closed.packed, 8))
    assert closed.packed_bytes() <= separate * 1.01
    assert list(closed) == positions


def test_a_pack_that_raised_between_compress_and_flush_does_not_spoil_the_next_block() -> None:
    """A pack that fails half-way (``compress`` already gave part of the block, ``flush`` raised, e.g. MemoryError)
    must not leave the process's one stream holding the rest: the next block still reads back alone."""
    packer = packed_module.Packer()
    rng = random.Random(0)
    first = pickle.dumps([rng.randbytes(64) for _ in range(3000)])  # ~200 KiB: compress returns output before flush
    real = packer._stream

    class FailingFlush:
        def compress(self, data: bytes) -> bytes:
            return real.compress(data)

        def flush(self, mode: int) -> bytes:
            raise MemoryError

    packer._stream = FailingFlush()  # type: ignore[assignment]
    with pytest.raises(MemoryError):
        packer.pack(first)
    if isinstance(packer._stream, FailingFlush):  # as a real stream that raised would be: the same object, kept
        packer._stream = real
    block = packer.pack(pickle.dumps(["next block"]))
    assert pickle.loads(zlib.decompressobj(-zlib.MAX_WBITS).decompress(block)) == ["next block"]
