"""The ``torch.save`` zip archive, checked to be laid out exactly as torch writes it (child side, standard library).

``torch.load`` reads a file as a zip archive only when its first four bytes are a zip record's signature, and as its
legacy format otherwise; Python's ``zipfile`` finds an archive anywhere in a file. So a file holding one network in
the legacy format followed by a zip archive of another would be two networks to two readers. This module accepts
only what torch writes: the first record at offset 0, every record stored uncompressed and unencrypted, each one
right after the previous one, the central directory right after the last, and the end record at the end of the file.
Nothing in the archive sizes an allocation beyond the pickle (bounded); tensor records are only checksummed, in
chunks, and located for the parent, which reads them itself.
"""

from __future__ import annotations

import os
import struct
import zipfile
from typing import BinaryIO

from .budgets import MAX_ARCHIVE_RECORDS, MAX_PICKLE_BYTES
from .refused import Refused

LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, sizes, name, extra
SIGNATURE = b"PK\x03\x04"
DESCRIPTOR = struct.Struct("<4s3L")  # data descriptor after a record: signature, crc, compressed and plain sizes
DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
END = struct.Struct("<4s4H2LH")  # end of central directory: signature, disks, entries, sizes, offset, comment
ENCRYPTED, HAS_DESCRIPTOR = 0x1, 0x8
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8"  # torch's legacy format: protocol 2, then its magic number
CHUNK = 1 << 20
SPARSE_BYTES = 1 << 20  # holes that a record may have (zero runs a file system stores sparsely)
NOT_AN_ARCHIVE = "not the zip archive torch.save writes: it is empty, cut short or another kind of file"


class Archive:
    """The records of a ``torch.save`` archive read from ``file`` (a seekable binary file of ``size`` bytes).

    Attributes:
        prefix (str): The archive's top folder (torch names it after the file it first wrote).
        records (dict[str, tuple[int, int]]): Record name -> (offset of its data in the file, its size).
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.size = file, size
        file.seek(0)
        head = file.read(len(LEGACY_MAGIC))
        if head.startswith(b"\x80\x02") and head == LEGACY_MAGIC:
            raise Refused("format", "in torch's legacy (pre-1.6) format, not the zip archive torch.save has written "
                                    "since 2020: load it with the torch that wrote it and save it again")
        if not head.startswith(SIGNATURE):
            raise Refused("format", NOT_AN_ARCHIVE)
        try:
            self.zip = zipfile.ZipFile(file)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            if "not a zip file" in str(error):  # no end record: the file stops before its archive's end
                raise Refused("format", NOT_AN_ARCHIVE) from None
            raise Refused("damaged", _damaged(_reason(error))) from None
        if len(infos) > MAX_ARCHIVE_RECORDS:
            raise Refused("budget", f"its archive holds {len(infos)} records, more than the {MAX_ARCHIVE_RECORDS} "
                                    f"this reader takes")
        self.records = self._check_layout(infos)
        self.infos = {info.filename: info for info in infos}
        pickles = [name for name in self.records if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise Refused("format", f"its archive holds {len(pickles)} data.pkl records, not the one torch.save "
                                    f"writes")
        self.prefix = pickles[0].partition("/")[0]
        if any(not name.startswith(f"{self.prefix}/") for name in self.records):
            raise Refused("format", "its archive's records are not all in one folder, as torch.save writes them")
        order = self.records.get(f"{self.prefix}/byteorder")
        if order is not None and self.read(f"{self.prefix}/byteorder", 16) != b"little":
            raise Refused("format", "its tensors are stored big-endian, which this reader does not take")

    def _check_layout(self, infos: list[zipfile.ZipInfo]) -> dict[str, tuple[int, int]]:
        """Check every record against its local header and the layout torch writes; return where each one's data is."""
        records: dict[str, tuple[int, int]] = {}
        position = 0
        for info in sorted(infos, key=lambda i: i.header_offset):
            name = info.filename
            if name in records:
                raise Refused("damaged", _damaged("it names a record twice"))
            if info.flag_bits & ENCRYPTED:
                raise Refused("damaged", _damaged("an encrypted record, which torch.save never writes"))
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise Refused("format", "its archive holds compressed records, which torch.save never writes")
            if info.header_offset != position:
                where = "data before its first record" if position == 0 else "a gap or an overlap between records"
                raise Refused("damaged", _damaged(f"{where}, which torch.save never writes: two readers could see two "
                                          f"different files"))
            self.file.seek(info.header_offset)
            header = self.file.read(LOCAL_HEADER.size)
            if len(header) != LOCAL_HEADER.size:
                raise Refused("damaged", _damaged("cut short"))
            signature, _, flags, method, _, _, crc, compressed, plain, name_length, extra = LOCAL_HEADER.unpack(header)
            local_name = self.file.read(name_length)
            if signature != SIGNATURE or method != zipfile.ZIP_STORED or flags & ENCRYPTED:
                raise Refused("damaged", _damaged("its record headers disagree with its directory"))
            if local_name.decode("utf-8", "replace") != name:
                raise Refused("damaged", _damaged("its record names disagree with its directory"))
            start = info.header_offset + LOCAL_HEADER.size + name_length + extra
            end = start + info.file_size
            if flags & HAS_DESCRIPTOR:
                self.file.seek(end)
                descriptor = self.file.read(DESCRIPTOR.size)
                if len(descriptor) != DESCRIPTOR.size or DESCRIPTOR.unpack(descriptor) != (
                        DESCRIPTOR_SIGNATURE, info.CRC, info.compress_size, info.file_size):
                    raise Refused("damaged", _damaged("its record sizes or checksums disagree with its directory"))
                end += DESCRIPTOR.size
            elif (crc, compressed, plain) != (info.CRC, info.compress_size, info.file_size):
                raise Refused("damaged", _damaged("its record sizes or checksums disagree with its directory"))
            if end > self.size:
                raise Refused("damaged", _damaged("cut short"))
            records[name] = (start, info.file_size)
            position = end
        if self.zip.start_dir != position:
            raise Refused("damaged", _damaged("data between its records and its directory"))
        self.file.seek(self.size - END.size)
        end_record = self.file.read(END.size)
        if len(infos) < 0xFFFF and (len(end_record) != END.size or end_record[:4] != b"PK\x05\x06"
                                     or END.unpack(end_record)[-1] != 0):
            raise Refused("damaged", _damaged("data after its end record"))
        return records

    def read(self, name: str, limit: int = MAX_PICKLE_BYTES) -> bytes:
        """Return a record's bytes (at most ``limit``), its checksum verified."""
        size = self.records[name][1]
        if size > limit:
            raise Refused("budget", f"its record {name.rpartition('/')[2]} holds {size} bytes, more than the "
                                    f"{limit} this reader takes")
        try:
            return self.zip.read(self.infos[name])
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            raise Refused("damaged", _damaged(_reason(error))) from None

    def storage(self, key: str, size: int) -> tuple[int, int]:
        """Return (offset in the file, size) of the tensor storage record ``key``, its checksum verified in chunks."""
        name = f"{self.prefix}/data/{key}"
        if name not in self.records or self.records[name][1] != size:
            found = "missing" if name not in self.records else f"{self.records[name][1]} bytes"
            raise Refused("damaged", _damaged(f"its storage record {key} is {found} where the pickle expects {size} bytes"))
        start, size = self.records[name]
        if has_hole(self.file.fileno(), start, start + size):
            raise Refused("content", f"its storage record {key} is a hole of a sparse file: no bytes are stored for it")
        try:
            with self.zip.open(self.infos[name]) as record:  # zipfile checks the CRC once the record is read whole
                while record.read(CHUNK):
                    pass
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            raise Refused("damaged", _damaged(_reason(error))) from None
        return self.records[name]


def has_hole(descriptor: int, start: int, end: int) -> bool:
    """Return True if most of bytes ``start:end`` of the file are holes (a sparse file's ranges with nothing stored).

    Then a few bytes on disk stand for up to gigabytes that a reader would allocate; no ``torch.save`` file is sparse.
    Short holes are not counted (a file system may store a run of zero bytes as one). Where the system cannot tell
    (no ``SEEK_HOLE``), there is no hole to find.
    """
    seek_hole, seek_data = getattr(os, "SEEK_HOLE", None), getattr(os, "SEEK_DATA", None)
    if seek_hole is None or end - start < SPARSE_BYTES:
        return False
    holes, position = 0, start
    try:
        while position < end:
            hole = os.lseek(descriptor, position, seek_hole)
            if hole >= end:
                break
            try:
                position = min(os.lseek(descriptor, hole, seek_data), end)
            except OSError:  # no data after the hole: it runs to the end of the file
                position = end
            holes += position - hole
    except OSError:
        return False
    return holes > SPARSE_BYTES and holes * 2 > end - start


def _damaged(detail: str) -> str:
    """The message of every kind of archive damage: damage is named as such."""
    return f"its zip archive is damaged ({detail})"


def _reason(error: BaseException) -> str:
    """``zipfile``'s own words for the damage, without the record names the file chose."""
    text = str(error).split(" for file ")[0].split(": ")[0]
    return "".join(c for c in text if c.isprintable())[:80] or type(error).__name__
