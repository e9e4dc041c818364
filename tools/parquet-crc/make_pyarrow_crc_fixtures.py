"""Writes the Parquet files with page checksums that test/parquet-page-checksums.test.ts reads, using pyarrow
(run once, commit the output; the tests need no Python):

    python3 -m venv /tmp/crcvenv && /tmp/crcvenv/bin/pip install pyarrow
    /tmp/crcvenv/bin/python tools/parquet-crc/make_pyarrow_crc_fixtures.py

Each file is an activation source as saeflow reads plain Parquet (seq/pos/token, one fixed-size float list
column), plus a dictionary-encoded string column so that dictionary pages are checksummed too; small pages and
row groups give several pages per column chunk, and the page index (offset index) is written. Values follow
value(row, j) = (((row * 31 + j * 7) % 97) - 48) / 16, as in test/fixtures/cache/make_pyarrow_fixtures.py.

Next to each file, `*-corrupt.parquet` is the same file with one byte of page data flipped (the last byte of
the hook column's chunk in row group 1, inside its last page's data); this script checks that pyarrow reads the
intact file with page_checksum_verification=True and refuses the corrupt one.
"""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', '..', 'test', 'fixtures', 'parquet-crc')
ROWS = 300
D = 8
HOOK = 'blocks.0.hook_resid_pre'


def table():
    r = np.arange(ROWS, dtype=np.int64)
    values = ((((r[:, None] * 31 + np.arange(D)[None, :] * 7) % 97) - 48) / 16).astype(np.float32)
    return pa.table(
        {
            'seq': pa.array(r // 16, type=pa.int64()),
            'pos': pa.array(r % 16, type=pa.int32()),
            'token': pa.array((r * 7919) % 50257, type=pa.int32()),
            'word': pa.array([f'w{i % 5}' for i in range(ROWS)]),
            HOOK: pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), D),
        }
    )


def write(name, **kwargs):
    path = os.path.join(OUT, name)
    pq.write_table(
        table(),
        path,
        write_page_checksum=True,
        write_page_index=True,
        row_group_size=128,
        data_page_size=512,
        use_dictionary=['word'],
        **kwargs,
    )
    back = pq.read_table(path, page_checksum_verification=True)
    assert back.equals(table()), name

    meta = pq.ParquetFile(path).metadata
    hook = next(
        meta.row_group(1).column(i)
        for i in range(meta.num_columns)
        if meta.row_group(1).column(i).path_in_schema.startswith(HOOK)
    )
    at = hook.data_page_offset + hook.total_compressed_size - 1
    data = bytearray(open(path, 'rb').read())
    data[at] ^= 0x01
    corrupt = path.replace('.parquet', '-corrupt.parquet')
    open(corrupt, 'wb').write(data)
    try:
        pq.read_table(corrupt, page_checksum_verification=True)
    except OSError as e:
        print(f'{name}: pyarrow refuses the corrupt twin (byte {at} flipped): {e}')
    else:
        raise AssertionError(f'pyarrow read {corrupt} without noticing')


os.makedirs(OUT, exist_ok=True)
write('pyarrow-crc-v1-snappy.parquet', compression='snappy', data_page_version='1.0')
write('pyarrow-crc-v2-zstd.parquet', compression='zstd', data_page_version='2.0')
print(f'pyarrow {pa.__version__}')
