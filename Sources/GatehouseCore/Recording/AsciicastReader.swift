import Foundation

/// One event of an asciicast v2 recording, with its data as the bytes the terminal got.
public struct AsciicastEvent: Sendable, Equatable {
    public var time: Double
    public var code: String
    public var data: [UInt8]
}

public struct AsciicastHeader: Sendable {
    public var width: Int
    public var height: Int
    public var timestamp: Int?
    public var title: String?
}

public enum AsciicastError: Error, CustomStringConvertible {
    case notAsciicast(String)
    public var description: String {
        switch self { case .notAsciicast(let why): return "not an asciicast v2 recording: \(why)" }
    }
}

/// Reads asciicast v2 back into bytes, undoing the encoder exactly: `\udcXX` lone surrogates
/// become the byte XX again. A last line cut short (a crash mid-write) is ignored.
public struct AsciicastReader {
    public private(set) var header: AsciicastHeader
    private let lines: [Substring]

    public init(data: Data) throws {
        let text = String(decoding: data, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard let first = lines.first,
              let object = try? JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any],
              object["version"] as? Int == 2 else {
            throw AsciicastError.notAsciicast("no version 2 header")
        }
        header = AsciicastHeader(width: object["width"] as? Int ?? 80, height: object["height"] as? Int ?? 24,
                                 timestamp: object["timestamp"] as? Int, title: object["title"] as? String)
        lines.removeFirst()
        self.lines = lines
    }

    /// Events in order; malformed lines (only possible as the torn last line) are skipped.
    public func events() -> [AsciicastEvent] {
        lines.compactMap { Self.parseEvent(Array($0.utf8)) }
    }

    public static func parseEvent(_ line: [UInt8]) -> AsciicastEvent? {
        var i = 0
        func skipSpace() { while i < line.count, line[i] == 0x20 || line[i] == 0x09 || line[i] == 0x0D { i += 1 } }
        func expect(_ c: UInt8) -> Bool {
            skipSpace()
            guard i < line.count, line[i] == c else { return false }
            i += 1
            return true
        }
        guard expect(UInt8(ascii: "[")) else { return nil }
        skipSpace()
        let numberStart = i
        while i < line.count, (line[i] >= UInt8(ascii: "0") && line[i] <= UInt8(ascii: "9")) || line[i] == UInt8(ascii: ".")
            || line[i] == UInt8(ascii: "e") || line[i] == UInt8(ascii: "E") || line[i] == UInt8(ascii: "-") || line[i] == UInt8(ascii: "+") { i += 1 }
        guard let time = Double(String(decoding: line[numberStart..<i], as: UTF8.self)),
              expect(UInt8(ascii: ",")), let code = parseString(line, &i),
              expect(UInt8(ascii: ",")), let data = parseString(line, &i),
              expect(UInt8(ascii: "]")) else { return nil }
        return AsciicastEvent(time: time, code: String(decoding: code, as: UTF8.self), data: data)
    }

    private static func parseString(_ s: [UInt8], _ i: inout Int) -> [UInt8]? {
        while i < s.count, s[i] == 0x20 { i += 1 }
        guard i < s.count, s[i] == UInt8(ascii: "\"") else { return nil }
        i += 1
        var out: [UInt8] = []
        out.reserveCapacity(64)
        while i < s.count {
            let b = s[i]
            if b == UInt8(ascii: "\"") { i += 1; return out }
            if b != UInt8(ascii: "\\") { out.append(b); i += 1; continue }
            guard i + 1 < s.count else { return nil }
            let e = s[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard let unit = hex4(s, i) else { return nil }
                i += 4
                if (0xD800...0xDBFF).contains(unit), i + 6 <= s.count, s[i] == UInt8(ascii: "\\"), s[i + 1] == UInt8(ascii: "u"),
                   let low = hex4(s, i + 2), (0xDC00...0xDFFF).contains(low) {
                    i += 6
                    appendScalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), to: &out)
                } else if (0xDC80...0xDCFF).contains(unit) {
                    out.append(UInt8(unit - 0xDC00)) // surrogateescape: the original byte
                } else if (0xD800...0xDFFF).contains(unit) {
                    appendScalar(0xFFFD, to: &out)
                } else {
                    appendScalar(unit, to: &out)
                }
            default: out.append(e) // \" \\ \/
            }
        }
        return nil
    }

    private static func hex4(_ s: [UInt8], _ at: Int) -> UInt32? {
        guard at + 4 <= s.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = s[at + k]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }

    private static func appendScalar(_ v: UInt32, to out: inout [UInt8]) {
        guard let scalar = Unicode.Scalar(v) else { out += [0xEF, 0xBF, 0xBD]; return }
        out += Array(String(Character(scalar)).utf8)
    }
}
