import Foundation

/// The interactive asset menu a user sees after `ssh alice@gateway`: the accounts their
/// grants allow, a filter, pick by number or name. A pure state machine over bytes in and
/// bytes out, so every protocol (and the tests) drive it the same way.
public struct AssetMenu: Sendable {
    public enum Action: Sendable, Equatable {
        case none
        case connect(Directory.Target)
        /// Watch an online session (auditors and admins).
        case watch(SessionID)
        /// Draw the menu again with fresh data (an empty Enter).
        case refresh
        case quit
    }

    public let user: String
    public let targets: [Directory.Target]
    /// Echo typed characters back: true on a PTY, where the client's terminal is raw.
    public let echo: Bool
    /// Sessions this user may watch (empty for users who may not).
    public let online: [SessionSummary]
    public private(set) var visible: [Directory.Target]
    private var line: [UInt8] = []
    private var escape: EscapeState = .none

    private enum EscapeState { case none, escape, csi }

    public static let prompt = "gatehouse> "

    public init(user: String, targets: [Directory.Target], echo: Bool, online: [SessionSummary] = []) {
        self.user = user
        self.targets = targets
        self.echo = echo
        self.online = online
        self.visible = targets
    }

    /// The full screen: header, table of visible entries, help line and prompt.
    public func screen(note: String? = nil) -> String {
        var out = "\r\n  Gatehouse: assets for \(user)\r\n\r\n"
        if targets.isEmpty {
            out += "  You have no grants yet. Ask an administrator for access.\r\n"
        } else {
            out += table(["#", "ASSET", "ACCOUNT", "ADDRESS"], visible.enumerated().map { i, t in
                [String(i + 1), t.asset.name, t.account.name, "\(t.asset.host):\(t.asset.sshPort)"]
            })
        }
        if !online.isEmpty {
            out += "\r\n  Online sessions (type w and a number to watch, read-only; Ctrl-] leaves)\r\n\r\n"
            out += table(["W", "ID", "USER", "ASSET", "ACCOUNT", "FROM", "SINCE"], online.enumerated().map { i, s in
                ["w\(i + 1)", s.id.short, s.user, s.asset ?? "-", s.account ?? "-", s.remoteAddress, Self.clock(s.started)]
            })
        }
        if let note { out += "\r\n  \(note)\r\n" }
        out += "\r\n  Type a number or name to connect, other text to filter, Enter to refresh, q to quit.\r\n"
        out += "  In an asset session, ~+ at the start of a line makes a read-only invite code, ~* one that may type.\r\n"
        out += Self.prompt
        return out
    }

    private func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (c, cell) in row.enumerated() { widths[c] = max(widths[c], cell.count) } }
        func format(_ cells: [String]) -> String {
            "  " + cells.enumerated().map { c, cell in
                c == 0 ? String(repeating: " ", count: widths[c] - cell.count) + cell
                       : cell + String(repeating: " ", count: widths[c] - cell.count)
            }.joined(separator: "  ").trimmingTrailingSpaces() + "\r\n"
        }
        return ([header] + rows).map(format).joined()
    }

    static func clock(_ date: Date) -> String {
        let seconds = Int(date.timeIntervalSince1970) % 86400
        return String(format: "%02d:%02d UTC", seconds / 3600, seconds % 3600 / 60)
    }

    /// Feeds what the user typed; returns what to send back and, when Enter completed a
    /// choice, the action. Bytes after an action are ignored (the caller switches away).
    public mutating func feed(_ bytes: [UInt8]) -> (output: [UInt8], action: Action) {
        var out: [UInt8] = []
        for byte in bytes {
            switch escape {
            case .escape:
                escape = byte == UInt8(ascii: "[") || byte == UInt8(ascii: "O") ? .csi : .none
                continue
            case .csi:
                if (0x40...0x7e).contains(byte) { escape = .none }
                continue
            case .none: break
            }
            switch byte {
            case 0x1b: escape = .escape
            case 0x0d, 0x0a:
                if echo { out += Array("\r\n".utf8) }
                let text = String(decoding: line, as: UTF8.self).trimmingCharacters()
                line = []
                let (more, action) = choose(text)
                out += more
                if action != .none { return (out, action) }
            case 0x7f, 0x08:
                if !line.isEmpty {
                    // Drop a whole UTF-8 character, not one byte of it.
                    repeat { line.removeLast() } while !line.isEmpty && (line.last! & 0xc0) == 0x80
                    if echo { out += [0x08, 0x20, 0x08] }
                }
            case 0x15: // Ctrl-U
                if echo { out += Array(repeating: 0x08, count: line.count) + Array(repeating: 0x20, count: line.count) + Array(repeating: 0x08, count: line.count) }
                line = []
            case 0x03: // Ctrl-C: abandon the line
                line = []
                if echo { out += Array("^C\r\n".utf8) }
                out += Array(Self.prompt.utf8)
            case 0x04: // Ctrl-D on an empty line leaves
                if line.isEmpty { return (out + Array("\r\n".utf8), .quit) }
            case 0x20...0x7e, 0x80...0xff:
                if line.count < 256 {
                    line.append(byte)
                    if echo { out.append(byte) }
                }
            default:
                continue
            }
        }
        return (out, .none)
    }

    private mutating func choose(_ text: String) -> ([UInt8], Action) {
        if text.isEmpty {
            visible = targets
            return ([], .refresh)
        }
        if !online.isEmpty, text.lowercased().hasPrefix("w"), let n = Int(String(text.dropFirst()).trimmingCharacters()) {
            if (1...online.count).contains(n) { return ([], .watch(online[n - 1].id)) }
            return (Array(screen(note: "No online session w\(n).").utf8), .none)
        }
        if ["q", "quit", "exit"].contains(text.lowercased()) { return ([], .quit) }
        if let n = Int(text) {
            if (1...max(1, visible.count)).contains(n), n <= visible.count { return ([], .connect(visible[n - 1])) }
            return (Array(screen(note: "No entry number \(n).").utf8), .none)
        }
        let exact = targets.filter { $0.asset.name == text || $0.label == text }
        if exact.count == 1 { return ([], .connect(exact[0])) }
        let needle = text.lowercased()
        let matches = targets.filter {
            $0.asset.name.lowercased().contains(needle) || $0.account.name.lowercased().contains(needle)
                || $0.asset.host.lowercased().contains(needle)
        }
        if matches.count == 1 { return ([], .connect(matches[0])) }
        if matches.isEmpty {
            visible = targets
            return (Array(screen(note: "Nothing matches \"\(Self.printable(text))\".").utf8), .none)
        }
        visible = matches
        return (Array(screen(note: "\(matches.count) matches for \"\(Self.printable(text))\".").utf8), .none)
    }

    /// User-typed text shown back: control characters replaced, so nothing typed can move
    /// the cursor or change the terminal.
    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) })
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }

    fileprivate func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
