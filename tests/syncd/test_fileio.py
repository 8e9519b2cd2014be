"""``syncd.fileio.read_to_end``: a whole file through its descriptor, whatever the size hint."""
import os

from syncd.fileio import BLOCK, read_to_end


def test_read_to_end_reads_past_the_size_hint(tmp_path):
    for size, hint in ((0, BLOCK), (10, BLOCK), (3 * BLOCK + 5, BLOCK), (3 * BLOCK + 5, 3 * BLOCK + 5), (100, 7)):
        data = os.urandom(size)
        (tmp_path / "f").write_bytes(data)
        fd = os.open(tmp_path / "f", os.O_RDONLY)
        try:
            assert read_to_end(fd, hint) == data, (size, hint)
        finally:
            os.close(fd)
