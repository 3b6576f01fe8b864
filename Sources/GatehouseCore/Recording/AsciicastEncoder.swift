/// Encodes terminal events as asciicast v2 lines (`[time, "o", "data"]\n`).
///
/// Bytes, not strings: terminal output is arbitrary bytes. Valid UTF-8 is copied as is; a
/// sequence split across two reads is held back until its end arrives (as asciinema's own
/// incremental decoder does); a byte that is not valid UTF-8 is written as the lone surrogate
/// `\udcXX` (Python's `surrogateescape`, PEP 383), which asciinema's player writes back as the
/// original byte. So the output events put together are exactly the bytes the client got.
public struct AsciicastEncoder: Sendable {
    private var pendingOutput: [UInt8] = []
    private var pendingInput: [UInt8] = []

    public init() {}

    public static func header(width: Int, height: Int, timestamp: Int, term: String?, title: String?) -> [UInt8] {
        var out: [UInt8] = []
        out += Array("{\"version\": 2, \"width\": \(max(1, width)), \"height\": \(max(1, height)), \"timestamp\": \(timestamp)".utf8)
        if let term {
            out += Array(", \"env\": {\"TERM\": ".utf8)
            appendJSONString(Array(term.utf8), to: &out)
            out += Array("}".utf8)
        }
        if let title {
            out += Array(", \"title\": ".utf8)
            appendJSONString(Array(title.utf8), to: &out)
        }
        out += Array("}\n".utf8)
        return out
    }

    /// Appends an `"o"` event for `bytes` (less any incomplete UTF-8 tail, kept for later).
    public mutating func output(_ bytes: UnsafeRawBufferPointer, at time: Double, to out: inout [UInt8]) {
        Self.event(code: UInt8(ascii: "o"), bytes: bytes, pending: &pendingOutput, time: time, to: &out)
    }

    public mutating func input(_ bytes: UnsafeRawBufferPointer, at time: Double, to out: inout [UInt8]) {
        Self.event(code: UInt8(ascii: "i"), bytes: bytes, pending: &pendingInput, time: time, to: &out)
    }

    public func resize(columns: Int, rows: Int, at time: Double, to out: inout [UInt8]) {
        Self.prefix(time: time, code: UInt8(ascii: "r"), to: &out)
        out += Array("\(columns)x\(rows)\"]\n".utf8)
    }

    public func marker(_ label: String, at time: Double, to out: inout [UInt8]) {
        Self.prefix(time: time, code: UInt8(ascii: "m"), to: &out)
        out.removeLast() // the opening quote; appendJSONString writes its own
        Self.appendJSONString(Array(label.utf8), to: &out)
        out += [UInt8(ascii: "]"), UInt8(ascii: "\n")]
    }

    /// Writes out whatever incomplete sequences are still held (at the end of a recording).
    public mutating func finish(at time: Double, to out: inout [UInt8]) {
        for (code, held) in [(UInt8(ascii: "o"), pendingOutput), (UInt8(ascii: "i"), pendingInput)] where !held.isEmpty {
            flushHeld(code: code, time: time, held: held, to: &out)
        }
        pendingOutput = []
        pendingInput = []
    }

    private func flushHeld(code: UInt8, time: Double, held: [UInt8], to out: inout [UInt8]) {
        Self.prefix(time: time, code: code, to: &out)
        held.withUnsafeBytes { Self.appendEscaped($0, to: &out, final: true) }
        out += [UInt8(ascii: "\""), UInt8(ascii: "]"), UInt8(ascii: "\n")]
    }

    private static func event(code: UInt8, bytes: UnsafeRawBufferPointer, pending: inout [UInt8], time: Double, to out: inout [UInt8]) {
        if pending.isEmpty {
            let complete = completePrefixLength(bytes)
            if complete > 0 {
                prefix(time: time, code: code, to: &out)
                appendEscaped(UnsafeRawBufferPointer(rebasing: bytes[0..<complete]), to: &out, final: false)
                out += [UInt8(ascii: "\""), UInt8(ascii: "]"), UInt8(ascii: "\n")]
            }
            pending = Array(bytes[complete...])
        } else {
            var joined = pending
            joined += bytes
            pending = []
            joined.withUnsafeBytes { event(code: code, bytes: $0, pending: &pending, time: time, to: &out) }
        }
    }

    /// Length of `bytes` without a trailing sequence that is a valid start of a character
    /// whose remaining bytes have not arrived yet.
    static func completePrefixLength(_ bytes: UnsafeRawBufferPointer) -> Int {
        let n = bytes.count
        var back = 1
        while back <= 3 && back <= n {
            let b = bytes[n - back]
            if b & 0xC0 != 0x80 {
                let need: Int
                switch b {
                case 0xC2...0xDF: need = 2
                case 0xE0...0xEF: need = 3
                case 0xF0...0xF4: need = 4
                default: return n
                }
                guard need > back else { return n }
                // Hold it back only if what has arrived could still become valid.
                let tail = UnsafeRawBufferPointer(rebasing: bytes[(n - back)...])
                return validPrefixOfSequence(tail, need: need) ? n - back : n
            }
            back += 1
        }
        return n
    }

    private static func validPrefixOfSequence(_ s: UnsafeRawBufferPointer, need: Int) -> Bool {
        guard s.count >= 2 else { return true }
        let (lo, hi) = secondByteRange(s[0])
        return (lo...hi).contains(s[1])
    }

    /// Allowed range for the second byte, which rules out overlong forms, surrogates and
    /// code points past U+10FFFF (Unicode table 3-7).
    @inline(__always)
    private static func secondByteRange(_ lead: UInt8) -> (UInt8, UInt8) {
        switch lead {
        case 0xE0: return (0xA0, 0xBF)
        case 0xED: return (0x80, 0x9F)
        case 0xF0: return (0x90, 0xBF)
        case 0xF4: return (0x80, 0x8F)
        default: return (0x80, 0xBF)
        }
    }

    @inline(__always)
    static func prefix(time: Double, code: UInt8, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        let micros = max(0, Int((time * 1_000_000).rounded()))
        appendDecimal(micros / 1_000_000, to: &out)
        out.append(UInt8(ascii: "."))
        var frac = micros % 1_000_000
        var digits = [UInt8](repeating: UInt8(ascii: "0"), count: 6)
        var i = 5
        while frac > 0 { digits[i] = UInt8(ascii: "0") + UInt8(frac % 10); frac /= 10; i -= 1 }
        out += digits
        out += [UInt8(ascii: ","), UInt8(ascii: " "), UInt8(ascii: "\""), code, UInt8(ascii: "\""),
                UInt8(ascii: ","), UInt8(ascii: " "), UInt8(ascii: "\"")]
    }

    private static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value < 10 { out.append(UInt8(ascii: "0") + UInt8(value)); return }
        out += Array(String(value).utf8)
    }


    static func appendJSONString(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        bytes.withUnsafeBytes { appendEscaped($0, to: &out, final: true) }
        out.append(UInt8(ascii: "\""))
    }

    /// JSON-escapes `bytes` into `out` (without quotes). Invalid UTF-8 becomes `\udcXX`.
    ///
    /// The hot path: plain ASCII is found eight bytes at a time and copied in runs.
    static func appendEscaped(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8], final: Bool) {
        let n = bytes.count
        guard n > 0, let src = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        // Worst case six bytes out per byte in (`\udcXX`, `\u001b`); written through a pointer.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: n * 6 + 16) { scratch in
            let dst = scratch.baseAddress!
            var k = 0
            var i = 0
            @inline(__always) func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 &+ v : 0x57 &+ v }
            while i < n {
                // Copy eight plain bytes at a time: none below 0x20, none at or above 0x80,
                // no quote (0x22), no backslash (0x5C).
                while i + 8 <= n {
                    let w = UInt64(littleEndian: UnsafeRawPointer(src + i).loadUnaligned(as: UInt64.self))
                    let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                    let below20 = (w &- ones &* 0x20) & ~w & highs
                    let q = w ^ (ones &* 0x22), bs = w ^ (ones &* 0x5C)
                    let quote = (q &- ones) & ~q & highs
                    let backslash = (bs &- ones) & ~bs & highs
                    if (below20 | quote | backslash | (w & highs)) != 0 { break }
                    UnsafeMutableRawPointer(dst + k).storeBytes(of: w, toByteOffset: 0, as: UInt64.self)
                    k += 8
                    i += 8
                }
                guard i < n else { break }
                let b = src[i]
                if b >= 0x20 && b < 0x80 && b != 0x22 && b != 0x5C {
                    dst[k] = b; k += 1; i += 1
                    continue
                }
                if b < 0x80 {
                    dst[k] = 0x5C
                    switch b {
                    case 0x22: dst[k + 1] = 0x22; k += 2
                    case 0x5C: dst[k + 1] = 0x5C; k += 2
                    case 0x0A: dst[k + 1] = UInt8(ascii: "n"); k += 2
                    case 0x0D: dst[k + 1] = UInt8(ascii: "r"); k += 2
                    case 0x09: dst[k + 1] = UInt8(ascii: "t"); k += 2
                    case 0x08: dst[k + 1] = UInt8(ascii: "b"); k += 2
                    case 0x0C: dst[k + 1] = UInt8(ascii: "f"); k += 2
                    default:
                        dst[k + 1] = UInt8(ascii: "u"); dst[k + 2] = 0x30; dst[k + 3] = 0x30
                        dst[k + 4] = hexDigit(b >> 4); dst[k + 5] = hexDigit(b & 0xF); k += 6
                    }
                    i += 1
                    continue
                }
                // Multi-byte: copy a whole valid sequence, else escape one byte.
                let length = validSequenceLength(bytes, at: i)
                if length > 0 {
                    for j in 0..<length { dst[k + j] = src[i + j] }
                    k += length
                    i += length
                    continue
                }
                dst[k] = 0x5C; dst[k + 1] = UInt8(ascii: "u"); dst[k + 2] = UInt8(ascii: "d"); dst[k + 3] = UInt8(ascii: "c")
                dst[k + 4] = hexDigit(b >> 4); dst[k + 5] = hexDigit(b & 0xF)
                k += 6
                i += 1
            }
            out.append(contentsOf: UnsafeBufferPointer(start: dst, count: k))
        }
    }

    @inline(__always)
    private static func validSequenceLength(_ buffer: UnsafeRawBufferPointer, at i: Int) -> Int {
        let s = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let count = buffer.count
        let lead = s[i]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return 0
        }
        guard i + need <= count else { return 0 }
        let (lo, hi) = secondByteRange(lead)
        guard (lo...hi).contains(s[i + 1]) else { return 0 }
        var k = 2
        while k < need {
            guard s[i + k] & 0xC0 == 0x80 else { return 0 }
            k += 1
        }
        return need
    }
}
