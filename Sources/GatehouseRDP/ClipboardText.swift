import Foundation

/// Clipboard text as RDP carries it: CF_UNICODETEXT (UTF-16LE) or CF_TEXT / CF_OEMTEXT (8-bit),
/// ended by a NUL that is not part of the text.
struct ClipboardText: Equatable {
    static let unicodeText: UInt32 = 13

    let text: String
    /// Bytes as sent, terminator included.
    let byteCount: Int

    init(format: UInt32, bytes: UnsafeRawBufferPointer) {
        byteCount = bytes.count
        if format == Self.unicodeText {
            var units = [UInt16]()
            units.reserveCapacity(bytes.count / 2)
            var i = 0
            while i + 1 < bytes.count {
                let unit = UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
                if unit == 0 { break }
                units.append(unit)
                i += 2
            }
            text = String(decoding: units, as: UTF16.self)
        } else {
            let body = bytes.prefix { $0 != 0 }
            // CF_TEXT is the sender's ANSI code page; UTF-8 when it decodes, Latin-1 otherwise.
            text = String(validating: Array(body), as: UTF8.self) ?? String(body.map { Character(Unicode.Scalar($0)) })
        }
    }

    var characters: Int { text.count }

    /// The start of the text for the records: control characters shown as escapes.
    func preview(_ limit: Int) -> String {
        let head = text.prefix(limit)
        return String(head) + (text.count > limit ? "…" : "")
    }
}
