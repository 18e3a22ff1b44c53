"""A minimal Prometheus remote-write 1.0 client: protobuf encoding of
`prometheus.WriteRequest` by hand (the message is tiny) and snappy block
compression with cramjam, so the same bytes can be sent to Prometheus and
to Sightline."""

import struct

import cramjam
import requests

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    return _varint((num << 3) | wire) + payload


def _bytes(num, data):
    return _field(num, 2, _varint(len(data)) + data)


def _label(name, value):
    return _bytes(1, name.encode()) + _bytes(2, value.encode())


def _sample(value, ts_ms):
    body = _field(1, 1, struct.pack("<d", value))
    body += _field(2, 0, _varint(ts_ms & 0xFFFFFFFFFFFFFFFF))
    return body


def encode(series):
    """`series`: list of (labels dict incl. __name__, [(ts_ms, value), ...])."""
    out = bytearray()
    for labels, samples in series:
        ts = bytearray()
        for k in sorted(labels):
            ts += _bytes(1, _label(k, labels[k]))
        for t, v in samples:
            ts += _bytes(2, _sample(v, t))
        out += _bytes(1, bytes(ts))
    return bytes(out)


def write(url, series, timeout=30):
    body = bytes(cramjam.snappy.compress_raw(encode(series)))
    r = requests.post(
        url,
        data=body,
        headers={
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
        timeout=timeout,
    )
    return r
