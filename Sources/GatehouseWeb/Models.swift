import Foundation
import GatehouseCore

/// A session as the API shows it.
struct SessionJSON: Encodable {
    var id: String
    var shortId: String
    var user: String
    var asset: String
    var account: String
    var `protocol`: String
    var remoteAddress: String
    var clientSoftware: String
    var program: String
    var state: String
    var started: Date
    var ended: Date?
    var durationSeconds: Double?
    var terminatedBy: String?
    var reason: String?
    var hasRecording: Bool
    var bytesIn: Int
    var bytesOut: Int
    /// Who is watching or has joined, for online sessions that can be watched.
    var watchers: [String]?
    /// A desktop (RDP) session: its recording is a `.gdr` desktop recording and its live
    /// stream carries desktop records (docs/desktop-recording.md).
    var desktop: Bool

    /// `live`: the terminal of an online terminal session. `desktopWatchers`: who watches an
    /// online desktop session (nil for any other).
    init(_ r: SessionRecord, live: LiveChannel?, desktopWatchers: [String]? = nil) {
        id = r.id
        shortId = r.shortID
        user = r.user
        asset = r.asset
        account = r.account
        self.protocol = r.protocolName
        remoteAddress = r.remoteAddress
        clientSoftware = r.clientSoftware
        program = r.program
        state = r.state.rawValue
        started = r.started
        ended = r.ended
        durationSeconds = r.duration ?? (r.state == .online ? Date().timeIntervalSince(r.started) : nil)
        terminatedBy = r.terminatedBy
        reason = r.reason
        hasRecording = r.recording != nil
        bytesIn = r.bytesIn
        bytesOut = r.bytesOut
        watchers = live?.watcherNames ?? desktopWatchers
        desktop = r.isDesktop || desktopWatchers != nil
        if let traffic = live?.traffic {
            bytesIn = traffic.in
            bytesOut = traffic.out
        }
    }
}

extension SessionRecord {
    /// A desktop (RDP) session, whose recording is a `.gdr` file rather than an asciicast.
    var isDesktop: Bool { protocolName == "rdp" || Self.isDesktopRecording(recording) }

    static func isDesktopRecording(_ relative: String?) -> Bool {
        guard let relative else { return false }
        return relative.hasSuffix(".gdr") || relative.hasSuffix(".gdr.gz")
    }
}

struct SessionPage: Encodable {
    var sessions: [SessionJSON]
    var total: Int
    var page: Int
    var perPage: Int
}

struct CommandJSON: Encodable {
    var time: Date
    var offset: Double
    var command: String
    var output: String
    var risk: String
    var rule: String?

    init(_ c: CommandRecord) {
        time = c.time
        offset = c.offset
        command = c.command
        output = c.output
        risk = c.risk.rawValue
        rule = c.rule
    }
}

struct ShareJSON: Encodable {
    var code: String
    var sessionId: String
    var mode: String
    var expires: Date
    var users: [String]
    var join: String
}

struct TerminateJSON: Encodable {
    var terminated: Bool
    var id: String
    var terminatedBy: String
}

struct CommandMatchJSON: Encodable {
    var sessionId: String
    var user: String
    var asset: String
    var account: String
    var time: Date
    var offset: Double
    var command: String
    var risk: String
    var rule: String?

    init(_ m: CommandMatch) {
        sessionId = m.command.sessionID
        user = m.user
        asset = m.asset
        account = m.account
        time = m.command.time
        offset = m.command.offset
        command = m.command.command
        risk = m.command.risk.rawValue
        rule = m.command.rule
    }
}

struct CommandPage: Encodable {
    var commands: [CommandMatchJSON]
    var page: Int
    var perPage: Int
}

/// A one-time RDP password, as issued.
struct RDPPasswordJSON: Encodable {
    var password: String
    var expires: Date
    /// What to type as the user name (ASSET replaced by the asset's name).
    var username: String
}
