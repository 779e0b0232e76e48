"""CRC-32C (Castagnoli), the checksum of every stored value. Re-exported by :mod:`kvasir.protocol`."""

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc`` (a previous result). Pure Python:
    about 10 MB/s, so the store only verifies values when asked to (``verify_crc=True``)."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in memoryview(data).cast("B"):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
