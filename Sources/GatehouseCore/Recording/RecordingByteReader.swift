import CZlib
import Foundation

/// Why a recording could not be read or seeked in.
public enum RecordingAccessError: Error, CustomStringConvertible, Equatable {
    /// The file cannot be opened or read.
    case io(path: String, reason: String)
    /// The compressed data ends before its end marker: the file was cut short.
    case truncated(path: String)
    /// The compressed data, or an event line, is damaged.
    case corrupt(path: String, reason: String)
    /// The file does not start with an asciicast v2 header.
    case notAsciicast(path: String, reason: String)
    /// A position asked for is not in the recording (not the start of an event line, or no number).
    case badPosition(String)

    public var description: String {
        switch self {
        case let .io(path, reason): return "cannot read the recording \(path): \(reason)"
        case let .truncated(path): return "the recording \(path) is truncated: its compressed data ends early"
        case let .corrupt(path, reason): return "the recording \(path) is corrupt: \(reason)"
        case let .notAsciicast(path, reason): return "\(path) is not an asciicast v2 recording: \(reason)"
        case let .badPosition(why): return "bad position in the recording: \(why)"
        }
    }
}

/// The uncompressed bytes of a recording from any offset, plain or gzipped.
///
/// Plain files are read at the offset directly. A gzip file with access points (written by
/// `Gzip.compressFile`) is entered at the last point at or before the offset, inflating raw
/// deflate from there and dropping the bytes before the offset (less than one access interval).
/// A gzip file without them is decompressed from its start, dropping everything before the
/// offset; streaming, so memory stays bounded either way. Reading from offset 0 checks the gzip
/// CRC; a stream that ends early throws `.truncated`, damaged data `.corrupt`.
public final class RecordingByteReader {
    public let path: String
    /// The uncompressed offset of the next byte `read` returns.
    public private(set) var position: Int
    /// Whether the file is gzipped.
    public let isCompressed: Bool

    private var fd: Int32
    private var stream: UnsafeMutablePointer<z_stream>?
    /// Raw deflate from an access point (ends at the end of the deflate stream), or the gzip
    /// format from the file's start (checked, and on to a following member if there is one).
    private var raw = false
    private var inflateEnded = false
    private var fileOffset = 0
    private var inputEOF = false
    private let inputCapacity = 256 * 1024
    private var input: UnsafeMutablePointer<UInt8>?

    /// Opens `path` at the uncompressed `offset` (past the end: nothing to read); a gzip file's
    /// access points are read from its header.
    public convenience init(path: String, offset: Int = 0) throws {
        try self.init(path: path, offset: offset, accessPoints: .unknown)
    }

    /// The same with the access points already known (nil: none, decompress from the start).
    public convenience init(path: String, offset: Int, accessPoints: GzipAccessPoints?) throws {
        try self.init(path: path, offset: offset, accessPoints: .known(accessPoints))
    }

    enum KnownPoints { case unknown, known(GzipAccessPoints?) }

    init(path: String, offset: Int, accessPoints: KnownPoints) throws {
        guard offset >= 0 else { throw RecordingAccessError.badPosition("negative offset \(offset)") }
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RecordingAccessError.io(path: path, reason: String(cString: strerror(errno))) }
        var magic = [UInt8](repeating: 0, count: 2)
        let n: Int
        do { n = try Gzip.preadAll(fd, &magic, at: 0, path: path) } catch {
            close(fd)
            throw RecordingAccessError.io(path: path, reason: "\(error)")
        }
        isCompressed = n == 2 && magic[0] == 0x1F && magic[1] == 0x8B
        position = 0
        guard isCompressed else {
            position = offset
            return
        }
        do {
            let points: GzipAccessPoints?
            switch accessPoints {
            case .known(let known): points = known
            case .unknown: points = try Gzip.accessPoints(fd: fd, path: path)
            }
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            self.stream = stream
            input = UnsafeMutablePointer<UInt8>.allocate(capacity: inputCapacity)
            if let points, offset > 0 {
                let point = points.point(atOrBefore: offset)
                raw = true
                fileOffset = point.compressed
                position = point.uncompressed
                guard inflateInit2_(stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                    throw RecordingAccessError.io(path: path, reason: "inflateInit2 failed")
                }
            } else {
                guard inflateInit2_(stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                    throw RecordingAccessError.io(path: path, reason: "inflateInit2 failed")
                }
            }
            try skip(offset - position)
        } catch let error as RecordingAccessError {
            release()
            throw error
        } catch {
            release()
            throw RecordingAccessError.io(path: path, reason: "\(error)")
        }
    }

    deinit { release() }

    private func release() {
        if let stream {
            inflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
            self.stream = nil
        }
        input?.deallocate()
        input = nil
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// Reads up to `buffer.count` bytes; 0 only at the end.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        guard let stream, let input else {
            while true {
                let n = pread(fd, buffer.baseAddress, buffer.count, off_t(position))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw RecordingAccessError.io(path: path, reason: String(cString: strerror(errno)))
                }
                position += n
                return n
            }
        }
        while !inflateEnded {
            if stream.pointee.avail_in == 0 && !inputEOF { try fill(stream, input) }
            stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(buffer.count)
            let rc = inflate(stream, Z_NO_FLUSH)
            let produced = buffer.count - Int(stream.pointee.avail_out)
            switch rc {
            case Z_OK:
                break
            case Z_STREAM_END:
                try endOfMember(stream, input)
            case Z_BUF_ERROR:
                // No progress: only possible with no input left.
                if inputEOF && stream.pointee.avail_in == 0 && produced == 0 {
                    throw RecordingAccessError.truncated(path: path)
                }
            case Z_DATA_ERROR, Z_NEED_DICT:
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "invalid compressed data"
                throw RecordingAccessError.corrupt(path: path, reason: "\(message) (near compressed offset \(fileOffset))")
            case Z_MEM_ERROR:
                throw RecordingAccessError.io(path: path, reason: "out of memory")
            default:
                throw RecordingAccessError.corrupt(path: path, reason: "inflate failed (\(rc))")
            }
            if produced > 0 {
                position += produced
                return produced
            }
            if rc == Z_OK, inputEOF, stream.pointee.avail_in == 0 {
                // Input exhausted mid-stream; the next round confirms with Z_BUF_ERROR.
                continue
            }
        }
        return 0
    }

    /// Reads up to `count` bytes; empty only at the end.
    public func read(upTo count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try read(into: $0) }
        out.removeSubrange(n...)
        return out
    }

    /// Drops `count` bytes (fewer at the end).
    public func skip(_ count: Int) throws {
        guard count > 0 else { return }
        guard stream != nil else {
            position += count
            return
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: min(count, 256 * 1024), alignment: 8)
        defer { scratch.deallocate() }
        var left = count
        while left > 0 {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<min(left, scratch.count)]))
            if n == 0 { return }
            left -= n
        }
    }

    private func fill(_ stream: UnsafeMutablePointer<z_stream>, _ input: UnsafeMutablePointer<UInt8>) throws {
        while true {
            let n = pread(fd, input, inputCapacity, off_t(fileOffset))
            if n < 0 {
                if errno == EINTR { continue }
                throw RecordingAccessError.io(path: path, reason: String(cString: strerror(errno)))
            }
            fileOffset += n
            if n == 0 { inputEOF = true }
            stream.pointee.next_in = input
            stream.pointee.avail_in = uInt(n)
            return
        }
    }

    /// After a member's end: raw deflate stops here; the gzip format goes on to a following member
    /// (concatenated gzip files) and ignores anything else after it, as gzip does.
    private func endOfMember(_ stream: UnsafeMutablePointer<z_stream>, _ input: UnsafeMutablePointer<UInt8>) throws {
        if raw {
            inflateEnded = true
            return
        }
        if stream.pointee.avail_in < 2 && !inputEOF {
            // Bring the next bytes to the front of the buffer and top it up.
            let left = Int(stream.pointee.avail_in)
            if left > 0 { input[0] = stream.pointee.next_in[0] }
            while true {
                let n = pread(fd, input + left, inputCapacity - left, off_t(fileOffset))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw RecordingAccessError.io(path: path, reason: String(cString: strerror(errno)))
                }
                fileOffset += n
                if n == 0 { inputEOF = true }
                stream.pointee.next_in = input
                stream.pointee.avail_in = uInt(left + n)
                break
            }
        }
        if stream.pointee.avail_in >= 2, stream.pointee.next_in[0] == 0x1F, stream.pointee.next_in[1] == 0x8B {
            inflateReset(stream)
        } else {
            inflateEnded = true
        }
    }
}

/// Splits a reader's bytes into lines (without their "\n"), each with its uncompressed offset.
struct RecordingLineReader {
    struct Line {
        var offset: Int
        var bytes: [UInt8]
        /// False for a last line without its "\n" (a torn write).
        var terminated: Bool
        var end: Int { offset + bytes.count + (terminated ? 1 : 0) }
    }

    /// Longer event lines are taken for damage rather than held in memory.
    static let maxLineLength = 64 << 20

    let reader: RecordingByteReader
    private let storage: Storage
    /// Uncompressed offset of the next line.
    private(set) var offset: Int
    private var atEnd = false

    /// The buffer: bytes [start, count) are read and not yet returned.
    private final class Storage {
        var base: UnsafeMutableRawPointer
        var capacity: Int
        var start = 0
        var count = 0
        init(capacity: Int) {
            self.capacity = capacity
            base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        }
        deinit { base.deallocate() }
    }

    init(_ reader: RecordingByteReader, bufferSize: Int = 256 * 1024) {
        self.reader = reader
        storage = Storage(capacity: bufferSize)
        offset = reader.position
    }

    mutating func next() throws -> Line? {
        let s = storage
        var searchFrom = s.start
        while true {
            if searchFrom < s.count, let p = memchr(s.base + searchFrom, 0x0A, s.count - searchFrom) {
                let newline = s.base.distance(to: p)
                let line = Line(offset: offset, bytes: take(s.start, newline - s.start), terminated: true)
                offset += newline + 1 - s.start
                s.start = newline + 1
                return line
            }
            if s.count - s.start > Self.maxLineLength {
                throw RecordingAccessError.corrupt(path: reader.path,
                                                   reason: "a line longer than \(Self.maxLineLength) bytes at offset \(offset)")
            }
            if atEnd {
                guard s.start < s.count else { return nil }
                let line = Line(offset: offset, bytes: take(s.start, s.count - s.start), terminated: false)
                offset += s.count - s.start
                s.start = s.count
                return line
            }
            // Move what is left to the front (growing the buffer for a long line), then read more.
            let left = s.count - s.start
            if left > s.capacity / 2 {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: s.capacity * 2, alignment: 16)
                bigger.copyMemory(from: s.base + s.start, byteCount: left)
                s.base.deallocate()
                s.base = bigger
                s.capacity *= 2
            } else if s.start > 0 {
                memmove(s.base, s.base + s.start, left)
            }
            s.start = 0
            s.count = left
            searchFrom = left
            let n = try reader.read(into: UnsafeMutableRawBufferPointer(start: s.base + left, count: s.capacity - left))
            s.count += n
            if n == 0 { atEnd = true }
        }
    }

    private func take(_ from: Int, _ count: Int) -> [UInt8] {
        let source = storage.base + from
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: source, byteCount: count) }
            initialized = count
        }
    }
}
