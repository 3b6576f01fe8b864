import CZlib
import Foundation

// The desktop recording format (`.gdr`, version 2): a JSON header line, then records of
// type (u8), payload length (u32 LE), time in ms since the header's timestamp (u32 LE) and
// payload. See docs/desktop-recording.md. This file holds the record types and their
// encoding; DesktopRecordingReader.swift reads them back, DesktopCanvas.swift turns them into
// pixels.

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
