import CZlib
import Foundation

/// gzip files with zlib, for finished recordings (`.cast.gz`, which `zcat` and asciinema's
/// tooling read). Streaming, so a large recording never sits in memory whole.
///
/// `compressFile` writes a single-member gzip file that any gzip reader accepts, with one
/// addition: every `accessPointInterval` bytes of input the deflate stream is fully flushed
/// (`Z_FULL_FLUSH`: byte-aligned, no back-references across it), and the (uncompressed,
/// compressed) offsets of those flush points are kept in an extra field of the gzip header
/// (RFC 1952 FEXTRA, subfield `GH`, which gzip and zlib skip). A reader can then `lseek` to a
/// point and inflate raw deflate from there (`RecordingByteReader`) instead of decompressing
/// from the start. The header field is reserved before compressing (its size follows from the
/// input size) and filled in once the points are known, so the file stays one member and
/// `gzip -l` still reports its size.
public enum Gzip {
    public enum Failure: Error, CustomStringConvertible {
        case zlib(String), io(String)
        public var description: String {
            switch self {
            case .zlib(let s): return "compression failed: \(s)"
            case .io(let s): return s
            }
        }
    }

    /// Default spacing of access points, in uncompressed bytes.
    public static let defaultAccessPointInterval = 4 << 20

    /// Compresses `source` into `destination` (written to a temporary name, fsynced, renamed).
    /// Level 1 by default: terminal output compresses well even so, at several times the speed.
    /// `accessPointInterval` (uncompressed bytes; 0: none) spaces the full flushes recorded in the
    /// header; it is widened if a very large input would need more points than the header holds.
    public static func compressFile(_ source: String, to destination: String, level: Int32 = 1,
                                    accessPointInterval: Int = defaultAccessPointInterval) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw Failure.io("cannot read \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0 else { throw Failure.io("cannot read \(source): \(String(cString: strerror(errno)))") }
        let sourceSize = Int(info.st_size)

        let temporary = destination + ".part"
        let output = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw Failure.io("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var outputOpen = true
        func discard() {
            if outputOpen { close(output) }
            outputOpen = false
            unlink(temporary)
        }

        // Access points: as many slots as the input needs (plus a few, should it still grow),
        // widening the interval if the header field could not hold them all.
        var interval = accessPointInterval
        var capacity = 0
        if interval > 0 {
            if sourceSize / interval + 4 > AccessPointTable.maxPoints {
                interval = (sourceSize / (AccessPointTable.maxPoints - 4) + 1 + (1 << 20) - 1) & ~((1 << 20) - 1)
            }
            capacity = min(AccessPointTable.maxPoints, sourceSize / interval + 4)
        }
        var table = AccessPointTable(capacity: capacity)
        let header = table.gzipHeader(level: level)

        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }
        // Raw deflate: the gzip header and trailer are written here, around it.
        guard deflateInit2_(stream, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                            Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            discard()
            throw Failure.zlib("deflateInit2")
        }
        defer { deflateEnd(stream) }

        let inCapacity = 1 << 20
        let inBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: inCapacity)
        defer { inBuffer.deallocate() }
        let outCapacity = 256 * 1024
        let outBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: outCapacity)
        defer { outBuffer.deallocate() }

        do {
            try writeAll(output, header, path: temporary)
            var written = header.count
            var consumed = 0
            var sinceFlush = 0
            var crc = crc32(0, nil, 0)
            var finished = false
            while !finished {
                // Read up to the next access point, so that a flush falls exactly on it.
                var want = inCapacity
                if capacity > 0 { want = min(want, interval - sinceFlush) }
                let n = try readSome(input, inBuffer, want, path: source)
                crc = crc32(crc, inBuffer, uInt(n))
                consumed += n
                sinceFlush += n
                var flush = Z_NO_FLUSH
                if n == 0 {
                    flush = Z_FINISH
                } else if capacity > 0, sinceFlush >= interval, table.points.count < capacity {
                    flush = Z_FULL_FLUSH
                }
                stream.pointee.next_in = inBuffer
                stream.pointee.avail_in = uInt(n)
                repeat {
                    stream.pointee.next_out = outBuffer
                    stream.pointee.avail_out = uInt(outCapacity)
                    let rc = deflate(stream, flush)
                    guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else { throw Failure.zlib("deflate (\(rc))") }
                    let produced = outCapacity - Int(stream.pointee.avail_out)
                    if produced > 0 {
                        try writeAll(output, UnsafeRawBufferPointer(start: outBuffer, count: produced), path: temporary)
                        written += produced
                    }
                    if rc == Z_STREAM_END { finished = true }
                } while stream.pointee.avail_out == 0 || (flush == Z_FINISH && !finished)
                if flush == Z_FULL_FLUSH {
                    table.points.append(.init(uncompressed: consumed, compressed: written))
                    sinceFlush = 0
                } else if sinceFlush >= interval {
                    sinceFlush = 0 // out of slots: no more points
                }
            }
            // Trailer: CRC-32 and size mod 2^32, little-endian.
            var trailer: [UInt8] = []
            for value in [UInt32(truncatingIfNeeded: crc), UInt32(truncatingIfNeeded: consumed)] {
                for shift in stride(from: 0, to: 32, by: 8) { trailer.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
            }
            try writeAll(output, trailer, path: temporary)
            table.uncompressedSize = consumed
            let field = table.fieldData()
            let patched = field.withUnsafeBytes { pwrite(output, $0.baseAddress, $0.count, off_t(AccessPointTable.fieldDataOffset)) }
            guard patched == field.count else { throw Failure.io("cannot write \(temporary): \(String(cString: strerror(errno)))") }
            guard fsync(output) == 0 else { throw Failure.io("cannot write \(temporary): \(String(cString: strerror(errno)))") }
            outputOpen = false
            guard close(output) == 0 else {
                unlink(temporary)
                throw Failure.io("cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
        } catch {
            discard()
            throw error is Failure ? error : Failure.io("cannot write \(destination): \(error)")
        }
        guard rename(temporary, destination) == 0 else {
            unlink(temporary)
            throw Failure.io("cannot rename \(temporary)")
        }
    }

    private static func readSome(_ fd: Int32, _ buffer: UnsafeMutablePointer<UInt8>, _ count: Int, path: String) throws -> Int {
        var total = 0
        while total < count {
            let n = read(fd, buffer + total, count - total)
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure.io("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            total += n
        }
        return total
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure.io("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// The access points of a gzip file written by `compressFile`; nil for a plain file or a gzip
    /// file without them (written elsewhere or before they existed). Throws only when the file
    /// cannot be read.
    public static func accessPoints(ofFile path: String) throws -> GzipAccessPoints? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try accessPoints(fd: fd, path: path)
    }

    static func accessPoints(fd: Int32, path: String) throws -> GzipAccessPoints? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        let fileSize = Int(info.st_size)
        var head = [UInt8](repeating: 0, count: 12)
        guard try preadAll(fd, &head, at: 0, path: path) == 12,
              head[0] == 0x1F, head[1] == 0x8B, head[2] == 8, head[3] & 0x04 != 0 else { return nil }
        let xlen = Int(head[10]) | Int(head[11]) << 8
        var extra = [UInt8](repeating: 0, count: xlen)
        guard try preadAll(fd, &extra, at: 12, path: path) == xlen else { return nil }
        // Ours has no name, comment or header CRC: the deflate data follows the extra field.
        guard head[3] & 0x1A == 0 else { return nil }
        let dataStart = 12 + xlen
        // Walk the subfields for ours.
        var i = 0
        while i + 4 <= extra.count {
            let length = Int(extra[i + 2]) | Int(extra[i + 3]) << 8
            guard i + 4 + length <= extra.count else { return nil }
            if extra[i] == AccessPointTable.id1, extra[i + 1] == AccessPointTable.id2 {
                guard let table = AccessPointTable.parse(extra[(i + 4)..<(i + 4 + length)]) else { return nil }
                var points = [GzipAccessPoints.Point(uncompressed: 0, compressed: dataStart)]
                for p in table.points {
                    guard p.uncompressed > points.last!.uncompressed, p.compressed > points.last!.compressed,
                          p.uncompressed <= table.uncompressedSize, p.compressed < fileSize else { return nil }
                    points.append(p)
                }
                return GzipAccessPoints(points: points, uncompressedSize: table.uncompressedSize)
            }
            i += 4 + length
        }
        return nil
    }

    static func preadAll(_ fd: Int32, _ buffer: inout [UInt8], at offset: Int, path: String) throws -> Int {
        let count = buffer.count
        return try buffer.withUnsafeMutableBytes { raw in
            var total = 0
            while total < count {
                let n = pread(fd, raw.baseAddress! + total, count - total, off_t(offset + total))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure.io("cannot read \(path): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                total += n
            }
            return total
        }
    }

    /// Reads a gzip file (or a plain one: the magic bytes decide) into memory.
    public static func readFile(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure.io("cannot read \(path)") }
        guard data.count >= 2, data[data.startIndex] == 0x1f, data[data.startIndex + 1] == 0x8b else { return data }
        return try decompress(data)
    }

    public static func decompress(_ data: Data) throws -> Data {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure.zlib("inflateInit2")
        }
        defer { inflateEnd(&stream) }
        var result = Data()
        var outBuffer = [UInt8](repeating: 0, count: 256 * 1024)
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: raw.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(raw.count)
            var rc: Int32 = Z_OK
            repeat {
                try outBuffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(out.count)
                    rc = inflate(&stream, Z_NO_FLUSH)
                    guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else { throw Failure.zlib("inflate: corrupt data") }
                    result.append(contentsOf: out[0..<(out.count - Int(stream.avail_out))])
                }
                if rc == Z_BUF_ERROR && stream.avail_in == 0 { break } // truncated: keep what we have
            } while rc != Z_STREAM_END
        }
        return result
    }
}

/// Where raw deflate can start in a gzip file written by `Gzip.compressFile`: each point pairs an
/// offset in the uncompressed data with the file offset of a byte-aligned deflate block that
/// needs no earlier data. The first point is always (0, start of the deflate data).
public struct GzipAccessPoints: Sendable, Equatable {
    public struct Point: Sendable, Equatable {
        public var uncompressed: Int
        public var compressed: Int
        public init(uncompressed: Int, compressed: Int) {
            self.uncompressed = uncompressed
            self.compressed = compressed
        }
    }

    /// In increasing order of both offsets.
    public var points: [Point]
    /// Size of the uncompressed data.
    public var uncompressedSize: Int

    public init(points: [Point], uncompressedSize: Int) {
        self.points = points
        self.uncompressedSize = uncompressedSize
    }

    /// The last point at or before `offset`.
    public func point(atOrBefore offset: Int) -> Point {
        var low = 0, high = points.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if points[mid].uncompressed <= offset { low = mid } else { high = mid - 1 }
        }
        return points[low]
    }
}

/// The gzip header extra subfield `GH` that carries the access points.
///
/// Layout (little-endian): version (1 byte, 1), uncompressed size (8), point count (4), then
/// `capacity` slots of (uncompressed offset (8), compressed offset (8)); slots past the count
/// are zero. The header is written with the slots reserved and rewritten in place at the end.
struct AccessPointTable {
    static let id1 = UInt8(ascii: "G")
    static let id2 = UInt8(ascii: "H")
    static let version: UInt8 = 1
    static let fixedSize = 13
    static let slotSize = 16
    /// XLEN is 16 bits; the subfield header takes 4 of those bytes.
    static let maxPoints = (65535 - 4 - fixedSize) / slotSize
    /// File offset of the subfield data: 10-byte gzip header, XLEN (2), SI1 SI2 LEN (4).
    static let fieldDataOffset = 16

    var capacity: Int
    var points: [GzipAccessPoints.Point] = []
    var uncompressedSize = 0

    init(capacity: Int) { self.capacity = capacity }

    func fieldData() -> [UInt8] {
        var out: [UInt8] = [Self.version]
        Self.append(UInt64(uncompressedSize), bytes: 8, to: &out)
        Self.append(UInt64(points.count), bytes: 4, to: &out)
        for p in points {
            Self.append(UInt64(p.uncompressed), bytes: 8, to: &out)
            Self.append(UInt64(p.compressed), bytes: 8, to: &out)
        }
        out += [UInt8](repeating: 0, count: (capacity - points.count) * Self.slotSize)
        return out
    }

    /// ID1 ID2 CM FLG(FEXTRA) MTIME(0) XFL OS(unix), XLEN, then the subfield with empty slots.
    func gzipHeader(level: Int32) -> [UInt8] {
        let data = fieldData()
        let xlen = 4 + data.count
        var out: [UInt8] = [0x1F, 0x8B, 8, 0x04, 0, 0, 0, 0, level == 1 ? 4 : (level == 9 ? 2 : 0), 3]
        Self.append(UInt64(xlen), bytes: 2, to: &out)
        out += [Self.id1, Self.id2]
        Self.append(UInt64(data.count), bytes: 2, to: &out)
        out += data
        return out
    }

    static func parse(_ data: ArraySlice<UInt8>) -> AccessPointTable? {
        let bytes = Array(data)
        guard bytes.count >= fixedSize, bytes[0] == version else { return nil }
        let count = Int(read(bytes, at: 9, bytes: 4))
        guard count <= (bytes.count - fixedSize) / slotSize else { return nil }
        var table = AccessPointTable(capacity: (bytes.count - fixedSize) / slotSize)
        table.uncompressedSize = Int(truncatingIfNeeded: read(bytes, at: 1, bytes: 8))
        guard table.uncompressedSize >= 0 else { return nil }
        for k in 0..<count {
            let at = fixedSize + k * slotSize
            let u = Int(truncatingIfNeeded: read(bytes, at: at, bytes: 8))
            let c = Int(truncatingIfNeeded: read(bytes, at: at + 8, bytes: 8))
            guard u >= 0, c >= 0 else { return nil }
            table.points.append(.init(uncompressed: u, compressed: c))
        }
        return table
    }

    private static func append(_ value: UInt64, bytes: Int, to out: inout [UInt8]) {
        for k in 0..<bytes { out.append(UInt8(truncatingIfNeeded: value >> UInt64(8 * k))) }
    }

    private static func read(_ bytes: [UInt8], at offset: Int, bytes count: Int) -> UInt64 {
        var value: UInt64 = 0
        for k in 0..<count { value |= UInt64(bytes[offset + k]) << UInt64(8 * k) }
        return value
    }
}
