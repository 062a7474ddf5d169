"""Where ``rawguard stream`` reads live audio from: a pipe or a growing file, raw PCM or WAV.

A pipe ends at end-of-file. A regular file may still be written to (a recorder writing to disk), so
at its end the reader waits, and stops once it has not grown for ``idle_timeout`` seconds. A stream
that starts with a RIFF/WAVE header (``arecord`` without ``-t raw``, ``ffmpeg -f wav -``) takes its
rate, channels and sample format from the header.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections.abc import Iterator

from rawguard.serve.streaming import PcmFormat, StreamError

__all__ = ["read_chunks", "split_wav_header"]

_WAVE_FORMATS = {(1, 16): "s16le", (3, 32): "f32le"}  # (format tag, bits per sample) -> PCM format
_EXTENSIBLE = 0xFFFE
_MAX_HEADER = 1 << 16


def split_wav_header(head: bytes) -> tuple[PcmFormat, int] | None:
    """If ``head`` starts a WAV stream, ``(format, offset of the first sample)``; ``None`` when it
    is not WAV.

    Raises:
        StreamError: a WAV header of a sample format other than 16-bit PCM or 32-bit float, or a
            header whose ``data`` chunk does not start within the first 64 KiB.
        EOFError: more bytes are needed to find the ``data`` chunk.
    """
    if len(head) < 12:
        if b"RIFF".startswith(head[:4]):
            raise EOFError
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, pcm = 12, None
    while True:
        if pos + 8 > len(head):
            if pos + 8 > _MAX_HEADER:
                raise StreamError("WAV header: no 'data' chunk in the first 64 KiB")
            raise EOFError
        chunk_id, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk_id == b"data":
            if pcm is None:
                raise StreamError("WAV header: 'data' chunk before the 'fmt ' chunk")
            return pcm, pos + 8
        if chunk_id == b"fmt ":
            if pos + 8 + 16 > len(head):
                raise EOFError
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", head[pos + 8:pos + 24])
            if tag == _EXTENSIBLE and size >= 40 and pos + 8 + 26 <= len(head):
                tag = struct.unpack("<H", head[pos + 32:pos + 34])[0]  # the sub-format GUID starts with the tag
            if (tag, bits) not in _WAVE_FORMATS:
                raise StreamError(f"WAV header: format tag {tag} with {bits}-bit samples; streams take 16-bit PCM or 32-bit float")
            pcm = PcmFormat(sample_rate=rate, channels=channels, format=_WAVE_FORMATS[(tag, bits)])
        pos += 8 + size + (size & 1)


def read_chunks(fd: int, chunk_bytes: int = 8192, idle_timeout: float = 2.0, poll: float = 0.05) -> Iterator[bytes]:
    """Bytes from a file descriptor as they arrive (``os.read``: no waiting for a full chunk).

    Args:
        fd: an open descriptor (a pipe, stdin, or a regular file).
        chunk_bytes: most bytes per read.
        idle_timeout: a regular file: stop after it has not grown for this long (seconds).
        poll: a regular file: how often to look for new data at its end (seconds).
    """
    growing_file = stat.S_ISREG(os.fstat(fd).st_mode)
    idle_since = None
    while True:
        data = os.read(fd, chunk_bytes)
        if data:
            idle_since = None
            yield data
            continue
        if not growing_file:
            return
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since >= idle_timeout:
            return
        time.sleep(poll)
