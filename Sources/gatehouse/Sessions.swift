import ArgumentParser
import Foundation
import GatehouseCore

/// Opens the audit trail of a config's data directory, for the admin commands. They read the
/// SQLite file directly (WAL mode), so they work whether or not the server is running.
func openAudit(_ options: ConfigOption) throws -> AuditTrail {
    let config = try options.load()
    do {
        return try AuditTrail(dataDirectory: config.dataDir, policy: config.recording, logger: .init(label: "gatehouse"))
    } catch {
        throw ValidationError("\(error)")
    }
}

func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("gatehouse: \(message)\n".utf8))
    return ExitCode(1)
}

struct Sessions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, inspect, export, watch and terminate sessions.",
        subcommands: [List.self, Show.self, Export.self, Watch.self, Terminate.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sessions, newest first.")
        @OptionGroup var options: ConfigOption
        @Flag(help: "Only sessions online now.") var online = false
        @Flag(help: "Only sessions that have ended.") var finished = false
        @Option(help: "Only this user's sessions.") var user: String?
        @Option(help: "Only sessions to this asset.") var asset: String?
        @Option(help: "Only sessions started at or after this date (YYYY-MM-DD or ISO 8601).") var since: String?
        @Option(help: "At most this many sessions.") var limit = 100
        @Flag(help: "JSON output.") var json = false

        func run() throws {
            let audit = try openAudit(options)
            var filter = SessionFilter(user: user, asset: asset, limit: limit)
            if online { filter.states = [.online] }
            if finished { filter.states = SessionState.allCases.filter { $0 != .online } }
            if let since {
                guard let date = parseDate(since) else { throw ValidationError("--since: expected YYYY-MM-DD or an ISO 8601 time") }
                filter.since = date
            }
            let sessions = try audit.store.sessions(matching: filter)
            if json {
                print(try jsonText(sessions.map(SessionJSON.init)))
                return
            }
            let rows = sessions.map { s in
                [s.shortID, s.user, s.asset, s.account, s.protocolName, s.remoteAddress, clientName(s.clientSoftware),
                 formatDate(s.started), s.ended.map(formatDate) ?? "-", formatDuration(s.duration ?? Date().timeIntervalSince(s.started)),
                 s.state.rawValue]
            }
            printTable(header: ["ID", "USER", "ASSET", "ACCOUNT", "PROTO", "FROM", "CLIENT", "START", "END", "DURATION", "STATE"], rows: rows)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a session's details and activities.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "Session id or its short serial.") var id: String
        @Flag(help: "JSON output.") var json = false

        func run() throws {
            let audit = try openAudit(options)
            let session: SessionRecord
            do { session = try audit.store.session(id: id) } catch { throw fail("\(error)") }
            let activities = try audit.store.activities(sessionID: session.id)
            let commands = try audit.store.commands(sessionID: session.id)
            let transfers = try audit.store.transfers(sessionID: session.id)
            if json {
                var object = SessionJSON(session)
                object.activities = activities.map { ActivityJSON(time: iso($0.time), kind: $0.kind, detail: $0.detail) }
                object.commands = commands.map { CommandJSON($0) }
                object.transfers = transfers.map { TransferJSON(time: iso($0.time), direction: $0.direction, path: $0.path, bytes: $0.bytes,
                                                                outcome: $0.outcome, sha256: $0.sha256) }
                print(try jsonText(object))
                return
            }
            let fields: [(String, String)] = [
                ("Session", session.id), ("User", session.user), ("Asset", session.asset), ("Account", session.account),
                ("Protocol", session.protocolName), ("From", session.remoteAddress), ("Client", session.clientSoftware),
                ("Program", session.program), ("Started", formatDate(session.started)),
                ("Ended", session.ended.map(formatDate) ?? "-"),
                ("Duration", formatDuration(session.duration ?? Date().timeIntervalSince(session.started))),
                ("State", session.state.rawValue), ("Terminated by", session.terminatedBy ?? "-"),
                ("Reason", session.reason ?? "-"), ("Bytes in/out", "\(session.bytesIn) / \(session.bytesOut)"),
                ("Recording", session.recording.map { audit.recordingPath($0) } ?? "-"),
            ]
            for (k, v) in fields { print("\(k.padding(toLength: 14, withPad: " ", startingAt: 0)) \(printable(v))") }
            print("\nActivities")
            for a in activities { print("  \(formatDate(a.time))  \(a.kind.padding(toLength: 20, withPad: " ", startingAt: 0)) \(printable(a.detail))") }
            print("\nCommands")
            if commands.isEmpty { print("  (none)") }
            for c in commands {
                let risk = c.risk == .normal ? "" : " [\(c.risk.rawValue)\(c.rule.map { " by rule \($0)" } ?? "")]"
                print("  \(String(format: "%8.1fs", c.offset))  \(printable(c.command))\(risk)")
            }
            print("\nFile transfers")
            if transfers.isEmpty { print("  (none)") }
            for t in transfers {
                print("  \(formatDate(t.time))  \(t.direction.padding(toLength: 8, withPad: " ", startingAt: 0)) \(String(t.bytes).leftPadded(12))  "
                      + "\(t.outcome.padding(toLength: 10, withPad: " ", startingAt: 0)) \(printable(t.path))\(t.sha256.map { "  sha256:\($0.prefix(16))…" } ?? "")")
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a session's recording as an asciicast v2 file (for asciinema play / gatehouse play), "
                + "or a desktop session's as an MP4 video (--mp4).")
        @OptionGroup var options: ConfigOption
        @Argument(help: "Session id or its short serial.") var id: String
        @Option(name: .shortAndLong, help: "Output file (default: standard output).") var output: String?
        @Option(name: .customLong("mp4"), help: ArgumentHelp("Write a desktop (RDP) session's recording as an MP4 video to this file (needs ffmpeg).",
                                                             valueName: "path"))
        var mp4: String?

        func validate() throws {
            if mp4 != nil, output != nil { throw ValidationError("use either --output or --mp4") }
        }

        func run() throws {
            let audit = try openAudit(options)
            if let mp4 {
                let (session, path) = try locateRecording(audit, id: id)
                guard path.hasSuffix(".gdr") else {
                    throw fail("session \(session.shortID) is a terminal recording, not a desktop one: --mp4 is for desktop (RDP) sessions; "
                               + "export it without --mp4 and play it with gatehouse play or asciinema")
                }
                do {
                    try DesktopVideoExporter.exportMP4(recording: path, to: mp4)
                } catch {
                    throw fail("\(error)")
                }
                return
            }
            let data = try loadRecording(audit, id: id)
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: data, attributes: [.posixPermissions: 0o600]) else {
                    throw fail("cannot write \(output)")
                }
            } else {
                FileHandle.standardOutput.write(data)
            }
        }
    }
}

/// The uncompressed asciicast of a session (gzip or plain on disk).
func loadRecording(_ audit: AuditTrail, id: String) throws -> Data {
    let (_, existing) = try locateRecording(audit, id: id)
    do { return try Gzip.readFile(existing) } catch { throw fail("\(error)") }
}

/// A session and the file its recording is in now (the compressed or the plain name).
func locateRecording(_ audit: AuditTrail, id: String) throws -> (SessionRecord, String) {
    let session: SessionRecord
    do { session = try audit.store.session(id: id) } catch { throw fail("\(error)") }
    guard let relative = session.recording else {
        throw fail("session \(session.shortID) has no recording (\(session.state.rawValue)\(session.protocolName == "ssh" ? "" : ", \(session.protocolName)"))")
    }
    let path = audit.recordingPath(relative)
    // A live session's file is still being written as plain .cast.
    let candidates = [path, path.hasSuffix(".gz") ? String(path.dropLast(3)) : path + ".gz"]
    guard let existing = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
        throw fail("the recording of session \(session.shortID) is missing: \(path)")
    }
    return (session, existing)
}

struct SessionJSON: Encodable {
    var id, shortID, user, asset, account, `protocol`, remoteAddress, clientSoftware, program, started: String
    var ended: String?
    var durationSeconds: Double?
    var state: String
    var terminatedBy, reason, recording: String?
    var bytesIn, bytesOut: Int
    var activities: [ActivityJSON]?
    var commands: [CommandJSON]?
    var transfers: [TransferJSON]?

    enum CodingKeys: String, CodingKey {
        case id, shortID, user, asset, account, `protocol`, remoteAddress, clientSoftware, program, started, ended
        case durationSeconds, state, terminatedBy, reason, recording, bytesIn, bytesOut, activities, commands, transfers
    }

    /// Absent values are written as null, so every key is always there for scripts.
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(shortID, forKey: .shortID); try c.encode(user, forKey: .user)
        try c.encode(asset, forKey: .asset); try c.encode(account, forKey: .account); try c.encode(`protocol`, forKey: .protocol)
        try c.encode(remoteAddress, forKey: .remoteAddress); try c.encode(clientSoftware, forKey: .clientSoftware)
        try c.encode(program, forKey: .program); try c.encode(started, forKey: .started); try c.encode(ended, forKey: .ended)
        try c.encode(durationSeconds, forKey: .durationSeconds); try c.encode(state, forKey: .state)
        try c.encode(terminatedBy, forKey: .terminatedBy); try c.encode(reason, forKey: .reason)
        try c.encode(recording, forKey: .recording); try c.encode(bytesIn, forKey: .bytesIn); try c.encode(bytesOut, forKey: .bytesOut)
        try c.encodeIfPresent(activities, forKey: .activities)
        try c.encodeIfPresent(commands, forKey: .commands)
        try c.encodeIfPresent(transfers, forKey: .transfers)
    }

    init(_ s: SessionRecord) {
        id = s.id; shortID = s.shortID; user = s.user; asset = s.asset; account = s.account; `protocol` = s.protocolName
        remoteAddress = s.remoteAddress; clientSoftware = s.clientSoftware; program = s.program; started = iso(s.started)
        ended = s.ended.map(iso); durationSeconds = s.duration; state = s.state.rawValue; terminatedBy = s.terminatedBy
        reason = s.reason; recording = s.recording; bytesIn = s.bytesIn; bytesOut = s.bytesOut
    }
}

struct ActivityJSON: Encodable { var time, kind, detail: String }

func jsonText<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func iso(_ date: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: date)
}

func formatDate(_ date: Date) -> String {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return f.string(from: date)
}

func parseDate(_ text: String) -> Date? {
    let iso = ISO8601DateFormatter()
    if let d = iso.date(from: text) { return d }
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.dateFormat = "yyyy-MM-dd"
    return f.date(from: text)
}

func formatDuration(_ seconds: TimeInterval) -> String {
    let s = Int(seconds.rounded())
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
    return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
}

func clientName(_ banner: String) -> String {
    banner.hasPrefix("SSH-2.0-") ? String(banner.dropFirst(8).prefix(24)) : String(banner.prefix(24))
}

/// Text from users (asset names typed at login, client banners) shown in a terminal:
/// control characters would let it repaint the auditor's screen.
func printable(_ text: String) -> String {
    String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "\u{FFFD}" : Character($0) })
}

func printTable(header: [String], rows: [[String]], empty: String = "(no sessions)") {
    let all = [header] + rows.map { $0.map(printable) }
    var widths = header.map(\.count)
    for row in all { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in all {
        print(row.enumerated().map { i, cell in cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
    if rows.isEmpty { print(empty) }
}

struct TransferJSON: Encodable {
    var time: String
    var direction: String
    var path: String
    var bytes: Int
    var outcome: String
    var sha256: String?
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
