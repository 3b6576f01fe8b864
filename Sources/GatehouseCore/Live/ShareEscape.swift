/// The owner's in-session escapes, read off their keystrokes like OpenSSH's `~` escapes: at
/// the start of a line, `~+` creates a read-only invite and `~*` one that lets the joiner
/// type. Any other character after `~` goes through with the `~` (so `~/bin` still works),
/// and `~~` sends one `~`. OpenSSH's own escapes (`~.`, `~&`, `~?`, ...) never reach us.
public struct ShareEscape: Sendable {
    public enum Request: Sendable, Equatable { case readInvite, writeInvite }

    private var atLineStart = true
    private var sawTilde = false

    public init() {}

    /// Enter, line feed, Ctrl-C and Ctrl-U leave the cursor at the start of a fresh line.
    private static func endsLine(_ b: UInt8) -> Bool { b == 0x0D || b == 0x0A || b == 0x03 || b == 0x15 }

    /// The bytes to forward, and the escapes found in `bytes`.
    public mutating func feed(_ bytes: [UInt8]) -> (forward: [UInt8], requests: [Request]) {
        // Fast path: nothing to look at.
        if !sawTilde, !bytes.contains(0x7E) {
            if let last = bytes.last { atLineStart = Self.endsLine(last) }
            return (bytes, [])
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var requests: [Request] = []
        for b in bytes {
            if sawTilde {
                sawTilde = false
                switch b {
                case 0x2B: requests.append(.readInvite); atLineStart = true; continue // ~+
                case 0x2A: requests.append(.writeInvite); atLineStart = true; continue // ~*
                case 0x7E: out.append(0x7E); atLineStart = false; continue // ~~
                default: out.append(0x7E)
                }
            } else if atLineStart, b == 0x7E {
                sawTilde = true
                continue
            }
            out.append(b)
            atLineStart = Self.endsLine(b)
        }
        return (out, requests)
    }
}
