import CZlib
import Foundation

// The desktop recording format (`.gdr`, version 2): a JSON header line, then records of
// type (u8), payload length (u32 LE), time in ms since the header's timestamp (u32 LE) and
// payload. See docs/desktop-recording.md. This file holds what both sides need: the record
// types, their encoding, the reader and the compositor that turns records back into pixels.

/// Record type bytes. Readers skip any other value.
public enum DesktopRecordType: UInt8, Sendable, CaseIterable {
    case resize = 1
    case tile = 2
    case keyframe = 3
    case pointer = 4
    case event = 5
    case end = 6

    /// Type, length, time.
    public static let headerSize = 9
    /// A payload longer than this is taken for corruption, not data: the largest legitimate
    /// one, a keyframe of a big screen, compresses far below it.
    public static let maxPayload = 64 << 20
}

/// Everything that can go wrong reading or drawing a desktop recording.
public enum DesktopRecordingError: Error, CustomStringConvertible, Equatable {
    case badHeader(String)
    case recordTooLarge(type: UInt8, length: Int, offset: Int)
    case malformed(String)
    case io(String)

    public var description: String {
        switch self {
        case .badHeader(let why): return "not a desktop recording: \(why)"
        case let .recordTooLarge(type, length, offset):
            return "corrupt desktop recording: record of type \(type) at byte \(offset) claims \(length) bytes (limit \(DesktopRecordType.maxPayload))"
        case .malformed(let why): return "corrupt desktop recording: \(why)"
        case .io(let why): return why
        }
    }
}

/// The first line of a `.gdr` file (and the first live message).
public struct DesktopHeader: Sendable, Equatable {
    public static let kind = "gatehouse-desktop"
    /// 2: tiles are Sub-filtered RGB (1, RGBA, was never released).
    public static let currentVersion = 2
    public var version: Int
    public var width: Int
    public var height: Int
    /// Seconds since 1970; record times count from here.
    public var timestamp: Int
    public var title: String

    public init(width: Int, height: Int, timestamp: Int, title: String, version: Int = DesktopHeader.currentVersion) {
        self.version = version
        self.width = width
        self.height = height
        self.timestamp = timestamp
        self.title = title
    }

    /// The JSON line without its "\n", keys in the documented order.
    public func encoded() -> Data {
        let json = "{\"version\":\(version),\"kind\":\"\(Self.kind)\",\"width\":\(width),\"height\":\(height),"
            + "\"timestamp\":\(timestamp),\"title\":\(DesktopJSON.quote(title))}"
        return Data(json.utf8)
    }

    /// Parses the header line (without "\n").
    public static func parse(_ line: Data) throws -> DesktopHeader {
        guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else {
            throw DesktopRecordingError.badHeader("the first line is not a JSON object")
        }
        guard object["kind"] as? String == kind else {
            throw DesktopRecordingError.badHeader("kind is not \"\(kind)\"")
        }
        func integer(_ key: String) -> Int? {
            guard let n = object[key] as? NSNumber else { return nil }
            let d = n.doubleValue
            guard d.isFinite, abs(d) < 1e15 else { return nil }
            return Int(d)
        }
        guard let version = integer("version"), version == Self.currentVersion else {
            throw DesktopRecordingError.badHeader("unsupported version \(object["version"].map { "\($0)" } ?? "(none)")")
        }
        guard let width = integer("width"), let height = integer("height"), width >= 0, height >= 0 else {
            throw DesktopRecordingError.badHeader("width or height missing")
        }
        return DesktopHeader(width: width, height: height, timestamp: integer("timestamp") ?? 0,
                             title: object["title"] as? String ?? "", version: version)
    }
}

/// A rectangle of compressed pixels: the payload of TILE and KEYFRAME.
public struct DesktopTile: Sendable, Equatable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    /// zlib stream (RFC 1950) of width × height × 3 bytes: RGB rows, top to bottom, each
    /// filtered like PNG's "Sub" (see `DesktopTileFilter`).
    public var zlib: Data

    public init(x: Int, y: Int, width: Int, height: Int, zlib: Data) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
        self.zlib = zlib
    }

    /// Filters and compresses `rgba` (width × height × 4 bytes, rows packed) at `level`.
    public init(x: Int, y: Int, width: Int, height: Int, rgba: UnsafeRawBufferPointer,
                level: Int32 = DesktopZlib.tileLevel) {
        let filtered = DesktopTileFilter.filter(rgba: rgba, width: width, height: height)
        self.init(x: x, y: y, width: width, height: height, zlib: DesktopZlib.compress(filtered, level: level))
    }

    /// The RGBA bytes (alpha 255); throws when the stream is corrupt or not exactly
    /// width × height × 3 bytes.
    public func pixels() throws -> [UInt8] {
        let filtered = try DesktopZlib.inflate(zlib, expected: width * height * 3)
        return DesktopTileFilter.unfilter(filtered, width: width, height: height)
    }
}

/// How tile pixels are stored before zlib: RGB (alpha is always 255 on a desktop), and in
/// each row every byte after the first pixel replaced by its difference from the same byte
/// of the pixel to its left, modulo 256 (PNG's "Sub" filter). Flat areas, most of a desktop,
/// become runs of zeros: about a quarter smaller and a third faster to compress than RGBA.
public enum DesktopTileFilter {
    public static func filter(rgba: UnsafeRawBufferPointer, width: Int, height: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: width * height * 3)
        out.withUnsafeMutableBufferPointer { dst in
            for y in 0..<height {
                var previous: (UInt8, UInt8, UInt8) = (0, 0, 0)
                var s = y * width * 4, d = y * width * 3
                for _ in 0..<width {
                    let r = rgba[s], g = rgba[s + 1], b = rgba[s + 2]
                    dst[d] = r &- previous.0
                    dst[d + 1] = g &- previous.1
                    dst[d + 2] = b &- previous.2
                    previous = (r, g, b)
                    s += 4
                    d += 3
                }
            }
        }
        return out
    }

    public static func unfilter(_ filtered: [UInt8], width: Int, height: Int) -> [UInt8] {
        var out = [UInt8](repeating: 255, count: width * height * 4)
        filtered.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    var r: UInt8 = 0, g: UInt8 = 0, b: UInt8 = 0
                    var s = y * width * 3, d = y * width * 4
                    for _ in 0..<width {
                        r = r &+ src[s]
                        g = g &+ src[s + 1]
                        b = b &+ src[s + 2]
                        dst[d] = r
                        dst[d + 1] = g
                        dst[d + 2] = b
                        s += 3
                        d += 4
                    }
                }
            }
        }
        return out
    }
}

/// One record of a desktop recording.
public enum DesktopRecord: Sendable, Equatable {
    case resize(width: Int, height: Int)
    case tile(DesktopTile)
    case keyframe(DesktopTile)
    case pointer(x: Int, y: Int)
    /// A UTF-8 JSON object, kept as written.
    case event(Data)
    case end

    public var type: DesktopRecordType {
        switch self {
        case .resize: return .resize
        case .tile: return .tile
        case .keyframe: return .keyframe
        case .pointer: return .pointer
        case .event: return .event
        case .end: return .end
        }
    }

    /// An EVENT record from string fields (`{"kind":"key"}`).
    public static func event(_ fields: [String: String]) -> DesktopRecord {
        var json = "{"
        for (i, key) in fields.keys.sorted().enumerated() {
            if i > 0 { json += "," }
            json += DesktopJSON.quote(key) + ":" + DesktopJSON.quote(fields[key] ?? "")
        }
        return .event(Data((json + "}").utf8))
    }

    /// The fields of an EVENT, every value as a string (numbers as written); nil for other
    /// records or a payload that is not a JSON object.
    public var eventFields: [String: String]? {
        guard case .event(let json) = self,
              let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else { return nil }
        var fields: [String: String] = [:]
        for (key, value) in object {
            switch value {
            case let s as String: fields[key] = s
            case let n as NSNumber: fields[key] = n.stringValue
            default: fields[key] = "\(value)"
            }
        }
        return fields
    }

    /// The whole record: header and payload.
    public func encoded(time: UInt32) -> Data {
        var out = Data()
        append(to: &out, time: time)
        return out
    }

    /// Appends the whole record to `out`.
    public func append(to out: inout Data, time: UInt32) {
        var payload = Data()
        switch self {
        case let .resize(width, height):
            payload.appendLE16(width)
            payload.appendLE16(height)
        case .tile(let t), .keyframe(let t):
            payload.reserveCapacity(8 + t.zlib.count)
            payload.appendLE16(t.x)
            payload.appendLE16(t.y)
            payload.appendLE16(t.width)
            payload.appendLE16(t.height)
            payload.append(t.zlib)
        case let .pointer(x, y):
            payload.appendLE16(x)
            payload.appendLE16(y)
        case .event(let json):
            payload = json
        case .end:
            break
        }
        out.reserveCapacity(out.count + DesktopRecordType.headerSize + payload.count)
        out.append(type.rawValue)
        out.appendLE32(UInt32(truncatingIfNeeded: payload.count))
        out.appendLE32(time)
        out.append(payload)
    }

    /// Decodes a payload of a known type; throws when it is too short for its fields.
    public static func decode(type: DesktopRecordType, payload: Data) throws -> DesktopRecord {
        let p = payload.startIndex
        func need(_ n: Int, _ name: String) throws {
            guard payload.count >= n else {
                throw DesktopRecordingError.malformed("\(name) record of \(payload.count) bytes (needs \(n))")
            }
        }
        switch type {
        case .resize:
            try need(4, "RESIZE")
            return .resize(width: Int(payload.readLE16(at: p)), height: Int(payload.readLE16(at: p + 2)))
        case .tile, .keyframe:
            try need(8, type == .tile ? "TILE" : "KEYFRAME")
            let tile = DesktopTile(x: Int(payload.readLE16(at: p)), y: Int(payload.readLE16(at: p + 2)),
                                   width: Int(payload.readLE16(at: p + 4)), height: Int(payload.readLE16(at: p + 6)),
                                   zlib: payload.subdata(in: (p + 8)..<payload.endIndex))
            return type == .tile ? .tile(tile) : .keyframe(tile)
        case .pointer:
            try need(4, "POINTER")
            return .pointer(x: Int(payload.readLE16(at: p)), y: Int(payload.readLE16(at: p + 2)))
        case .event:
            return .event(Data(payload))
        case .end:
            return .end
        }
    }
}

/// A record and its time.
public struct DesktopTimedRecord: Sendable, Equatable {
    /// Milliseconds since the header's timestamp.
    public var time: Int
    public var record: DesktopRecord
    public init(time: Int, record: DesktopRecord) {
        self.time = time
        self.record = record
    }
}

// MARK: - zlib

/// zlib (RFC 1950) one-shot compression for tiles.
public enum DesktopZlib {
    /// Tiles: level 1. They are the hot path (a full-screen change, scrolling or video, is
    /// compressed up to 12 times a second on the gateway), and level 6 costs about 5× the CPU
    /// for half the bytes: on a 1024×768 desktop-like image, 165 KB in 6 ms at level 1, 137 KB
    /// in 12 ms at 3, 78 KB in 35 ms at 6 (DesktopRecordingTests.testCompressionLevels).
    public static let tileLevel: Int32 = 1
    /// Keyframes: level 6. One every 10 s of activity at most, so CPU hardly matters, while
    /// their size is paid on disk for every one and again by every late live watcher.
    public static let keyframeLevel: Int32 = 6

    public static func compress(_ bytes: UnsafeRawBufferPointer, level: Int32 = tileLevel) -> Data {
        var bound = compressBound(uLong(bytes.count))
        var out = Data(count: Int(bound))
        let rc = out.withUnsafeMutableBytes { dst -> Int32 in
            guard let dstBase = dst.bindMemory(to: Bytef.self).baseAddress else { return Z_BUF_ERROR }
            let src = bytes.bindMemory(to: Bytef.self).baseAddress
            // zlib wants a pointer even for no input.
            var empty: Bytef = 0
            return withUnsafePointer(to: &empty) { emptyPointer in
                compress2(dstBase, &bound, src ?? emptyPointer, uLong(bytes.count), level)
            }
        }
        // compress2 cannot fail with a compressBound-sized buffer and a valid level.
        precondition(rc == Z_OK, "compress2 failed (\(rc))")
        out.count = Int(bound)
        return out
    }

    public static func compress(_ bytes: [UInt8], level: Int32 = tileLevel) -> Data {
        bytes.withUnsafeBytes { compress($0, level: level) }
    }

    /// Inflates a stream that must hold exactly `expected` bytes.
    public static func inflate(_ data: Data, expected: Int) throws -> [UInt8] {
        guard expected >= 0 else { throw DesktopRecordingError.malformed("negative tile size") }
        var out = [UInt8](repeating: 0, count: max(expected, 1))
        var length = uLongf(expected)
        let rc = out.withUnsafeMutableBufferPointer { dst in
            data.withUnsafeBytes { src -> Int32 in
                guard let srcBase = src.bindMemory(to: Bytef.self).baseAddress,
                      let dstBase = dst.baseAddress else { return Z_DATA_ERROR }
                return uncompress(dstBase, &length, srcBase, uLong(src.count))
            }
        }
        switch rc {
        case Z_OK:
            guard Int(length) == expected else {
                throw DesktopRecordingError.malformed("tile holds \(length) bytes of pixels, expected \(expected)")
            }
        case Z_BUF_ERROR:
            throw DesktopRecordingError.malformed("tile pixels are truncated or larger than the tile (\(expected) bytes expected)")
        case Z_MEM_ERROR:
            throw DesktopRecordingError.malformed("out of memory inflating a tile")
        default:
            throw DesktopRecordingError.malformed("tile pixels are not a valid zlib stream")
        }
        if expected == 0 { out.removeAll() }
        return out
    }
}

// MARK: - Reading

/// Splits bytes into records as they arrive: for a file read in chunks, or live messages.
///
/// `append` more bytes, then call `next` until it returns nil (needs more). Unknown types are
/// skipped; a length over `DesktopRecordType.maxPayload` throws (corruption, not a torn tail).
public struct DesktopRecordParser: Sendable {
    /// Received bytes; those before `position` are parsed already (dropped on the next append,
    /// so that parsing many small records does not copy the rest of the buffer each time).
    private var buffer = Data()
    private var position = 0
    /// Bytes dropped from the front of `buffer`, for error offsets.
    private var dropped = 0
    private var header: DesktopHeader?
    /// Longest header line accepted.
    static let maxHeaderLine = 64 * 1024

    public init() {}

    /// Starts after the header, e.g. for live messages once the header arrived separately.
    public init(header: DesktopHeader) { self.header = header }

    public mutating func append(_ bytes: Data) {
        if position > 0 {
            buffer = position < buffer.count ? buffer.subdata(in: position..<buffer.count) : Data()
            dropped += position
            position = 0
        }
        buffer.append(bytes)
    }

    /// Bytes received but not yet parsed (a partial record).
    public var pendingBytes: Int { buffer.count - position }

    /// The header, once its line is complete; throws when it is not a desktop recording.
    public mutating func readHeader() throws -> DesktopHeader? {
        if let header { return header }
        guard let newline = buffer[position...].firstIndex(of: UInt8(ascii: "\n")) else {
            if pendingBytes > Self.maxHeaderLine { throw DesktopRecordingError.badHeader("no header line") }
            return nil
        }
        let parsed = try DesktopHeader.parse(buffer.subdata(in: position..<newline))
        position = newline + 1
        header = parsed
        return parsed
    }

    /// The next known record, or nil when more bytes are needed.
    public mutating func next() throws -> DesktopTimedRecord? {
        guard try readHeader() != nil else { return nil }
        while pendingBytes >= DesktopRecordType.headerSize {
            let at = position
            let rawType = buffer[at]
            let length = Int(buffer.readLE32(at: at + 1))
            guard length <= DesktopRecordType.maxPayload else {
                throw DesktopRecordingError.recordTooLarge(type: rawType, length: length, offset: dropped + at)
            }
            guard pendingBytes >= DesktopRecordType.headerSize + length else { return nil }
            let time = Int(buffer.readLE32(at: at + 5))
            let payloadStart = at + DesktopRecordType.headerSize
            let end = payloadStart + length
            position = end
            guard let type = DesktopRecordType(rawValue: rawType) else { continue } // unknown: skipped
            do {
                let record = try DesktopRecord.decode(type: type, payload: buffer.subdata(in: payloadStart..<end))
                return DesktopTimedRecord(time: time, record: record)
            } catch DesktopRecordingError.malformed(let why) {
                throw DesktopRecordingError.malformed("\(why) at byte \(dropped + at)")
            }
        }
        return nil
    }
}

/// Reads a `.gdr` file (or bytes in memory) record by record, never the whole file at once.
///
/// The header is read by `init`. `next()` returns records in order and nil at the end; a torn
/// last record (a gateway stopped mid-write) ends the recording quietly (`tornTailBytes` says
/// how much was left over).
public final class DesktopRecordingReader {
    public let header: DesktopHeader
    private var parser: DesktopRecordParser
    private var source: Source
    private static let chunkSize = 1 << 20

    private enum Source {
        case file(FileHandle)
        case memory
        case done
    }

    public convenience init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw DesktopRecordingError.io("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        try self.init(source: .file(handle), initial: Data())
    }

    public convenience init(data: Data) throws {
        try self.init(source: .memory, initial: data)
    }

    private init(source: Source, initial: Data) throws {
        var source = source
        var parser = DesktopRecordParser()
        parser.append(initial)
        var found = try parser.readHeader()
        while found == nil {
            guard try Self.fill(&parser, from: &source) else {
                if case .file(let handle) = source { try? handle.close() }
                throw DesktopRecordingError.badHeader(parser.pendingBytes == 0 ? "the file is empty" : "no complete header line")
            }
            found = try parser.readHeader()
        }
        self.header = found ?? DesktopHeader(width: 0, height: 0, timestamp: 0, title: "") // found is set here
        self.parser = parser
        self.source = source
    }

    deinit {
        if case .file(let handle) = source { try? handle.close() }
    }

    /// Bytes after the last whole record, once `next` has returned nil.
    public var tornTailBytes: Int { parser.pendingBytes }

    public func next() throws -> DesktopTimedRecord? {
        while true {
            if let record = try parser.next() { return record }
            guard try fill() else { return nil }
        }
    }

    /// Reads every remaining record.
    public func readAll() throws -> [DesktopTimedRecord] {
        var records: [DesktopTimedRecord] = []
        while let r = try next() { records.append(r) }
        return records
    }

    private func fill() throws -> Bool { try Self.fill(&parser, from: &source) }

    /// Appends the next chunk of the source; false at its end.
    private static func fill(_ parser: inout DesktopRecordParser, from source: inout Source) throws -> Bool {
        guard case .file(let handle) = source else { return false }
        let chunk: Data
        do {
            chunk = try handle.read(upToCount: chunkSize) ?? Data()
        } catch {
            throw DesktopRecordingError.io("cannot read the recording: \(error)")
        }
        if chunk.isEmpty {
            try? handle.close()
            source = .done
            return false
        }
        parser.append(chunk)
        return true
    }
}

// MARK: - Compositing

/// The screen a desktop recording shows at some moment: an RGBA framebuffer that records are
/// applied to in order. Every bound is checked, so a corrupt recording throws instead of
/// writing outside the buffer.
public struct DesktopCanvas: Sendable {
    /// Largest screen accepted (pixels): 8192 × 8192, far above any real monitor layout, far
    /// below what a corrupt u16 × u16 size would allocate.
    public static let maxPixels = 8192 * 8192

    public private(set) var width: Int
    public private(set) var height: Int
    /// width × height × 4 bytes, RGBA.
    public private(set) var pixels: [UInt8]
    /// Where the user's mouse was last seen, if ever.
    public private(set) var pointer: (x: Int, y: Int)?

    public init(width: Int, height: Int) throws {
        try Self.checkSize(width, height)
        self.width = width
        self.height = height
        self.pixels = Self.black(width * height)
    }

    /// Applies one record; EVENT and END change nothing.
    public mutating func apply(_ record: DesktopRecord) throws {
        switch record {
        case let .resize(width, height):
            try resize(width: width, height: height)
        case .tile(let tile):
            try draw(tile, kind: "TILE")
        case .keyframe(let tile):
            guard tile.x == 0, tile.y == 0 else {
                throw DesktopRecordingError.malformed("KEYFRAME at (\(tile.x),\(tile.y)) instead of (0,0)")
            }
            try Self.checkSize(tile.width, tile.height)
            // Inflate before touching the screen: a bad keyframe leaves the canvas as it was.
            let rgba = try tile.pixels()
            width = tile.width
            height = tile.height
            pixels = rgba
        case let .pointer(x, y):
            pointer = (x, y)
        case .event, .end:
            break
        }
    }

    public mutating func resize(width: Int, height: Int) throws {
        try Self.checkSize(width, height)
        self.width = width
        self.height = height
        pixels = Self.black(width * height)
    }

    private mutating func draw(_ tile: DesktopTile, kind: String) throws {
        guard tile.width > 0, tile.height > 0,
              tile.x >= 0, tile.y >= 0, tile.x + tile.width <= width, tile.y + tile.height <= height else {
            throw DesktopRecordingError.malformed(
                "\(kind) \(tile.width)x\(tile.height) at (\(tile.x),\(tile.y)) outside the \(width)x\(height) screen")
        }
        let rgba = try tile.pixels()
        let rowBytes = tile.width * 4
        let screenRow = width * 4
        rgba.withUnsafeBytes { src in
            pixels.withUnsafeMutableBytes { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                for row in 0..<tile.height {
                    (d + (tile.y + row) * screenRow + tile.x * 4).copyMemory(from: s + row * rowBytes, byteCount: rowBytes)
                }
            }
        }
    }

    private static func checkSize(_ width: Int, _ height: Int) throws {
        guard width >= 0, height >= 0, width * height <= maxPixels else {
            throw DesktopRecordingError.malformed("screen size \(width)x\(height) out of range")
        }
    }

    /// Opaque black RGBA.
    static func black(_ count: Int) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: count * 4)
        p.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt32.self)
            let opaque = UInt32(0xFF00_0000).littleEndian
            for i in 0..<count { words[i] = opaque }
        }
        return p
    }
}

// MARK: - Helpers

enum DesktopJSON {
    /// A JSON string literal for `s`.
    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension Data {
    mutating func appendLE16(_ value: Int) {
        let v = UInt16(clamping: value)
        append(UInt8(truncatingIfNeeded: v))
        append(UInt8(truncatingIfNeeded: v >> 8))
    }

    mutating func appendLE32(_ value: UInt32) {
        append(UInt8(truncatingIfNeeded: value))
        append(UInt8(truncatingIfNeeded: value >> 8))
        append(UInt8(truncatingIfNeeded: value >> 16))
        append(UInt8(truncatingIfNeeded: value >> 24))
    }

    /// Little-endian u16 at an absolute index (caller checks bounds).
    func readLE16(at i: Index) -> UInt16 {
        UInt16(self[i]) | UInt16(self[i + 1]) << 8
    }

    /// Little-endian u32 at an absolute index (caller checks bounds).
    func readLE32(at i: Index) -> UInt32 {
        UInt32(self[i]) | UInt32(self[i + 1]) << 8 | UInt32(self[i + 2]) << 16 | UInt32(self[i + 3]) << 24
    }
}
