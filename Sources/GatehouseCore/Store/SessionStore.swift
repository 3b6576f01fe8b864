import Foundation

/// How a session ended up.
public enum SessionState: String, Sendable, CaseIterable, Codable {
    /// Relaying right now.
    case online
    /// Ended by the user or the asset.
    case finished
    /// Ended by an administrator or by shutdown.
    case terminated
    /// The gateway stopped (crash, kill -9) while it was online.
    case interrupted
    /// Never reached the asset: unknown asset, no grant, unreachable, refused.
    case failed
}

/// One session as the audit trail keeps it: one user on one account of one asset.
public struct SessionRecord: Sendable, Equatable, Codable {
    public var id: String
    public var user: String
    public var asset: String
    public var account: String
    public var protocolName: String
    public var remoteAddress: String
    public var clientSoftware: String
    /// `shell`, `exec: CMD` or `subsystem: NAME`.
    public var program: String
    public var started: Date
    public var ended: Date?
    public var state: SessionState
    public var terminatedBy: String?
    public var reason: String?
    /// Recording file, relative to the recordings directory.
    public var recording: String?
    public var bytesIn: Int
    public var bytesOut: Int

    public init(id: String, user: String, asset: String, account: String, protocolName: String, remoteAddress: String,
                clientSoftware: String, program: String, started: Date, ended: Date? = nil, state: SessionState,
                terminatedBy: String? = nil, reason: String? = nil, recording: String? = nil, bytesIn: Int = 0, bytesOut: Int = 0) {
        self.id = id
        self.user = user
        self.asset = asset
        self.account = account
        self.protocolName = protocolName
        self.remoteAddress = remoteAddress
        self.clientSoftware = clientSoftware
        self.program = program
        self.started = started
        self.ended = ended
        self.state = state
        self.terminatedBy = terminatedBy
        self.reason = reason
        self.recording = recording
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
    }

    /// The serial shown to people: the first 8 hex digits of the id.
    public var shortID: String { String(id.prefix(8)) }

    public var duration: TimeInterval? { ended.map { $0.timeIntervalSince(started) } }
}

public struct ActivityRecord: Sendable, Equatable, Codable {
    public var time: Date
    public var kind: String
    public var detail: String
}

public struct SessionFilter: Sendable {
    public var states: [SessionState] = []
    public var user: String?
    public var asset: String?
    public var protocolName: String?
    public var since: Date?
    public var until: Date?
    public var limit: Int = 1000
    public var offset: Int = 0
    /// Sessions in which a command containing this text was run.
    public var commandText: String?
    public enum Sort: String, Sendable, CaseIterable { case started, ended, user, asset, duration }
    public var sort: Sort = .started
    public var ascending = false

    public init(states: [SessionState] = [], user: String? = nil, asset: String? = nil, protocolName: String? = nil,
                since: Date? = nil, until: Date? = nil, limit: Int = 1000, offset: Int = 0) {
        self.states = states
        self.user = user
        self.asset = asset
        self.protocolName = protocolName
        self.since = since
        self.until = until
        self.limit = limit
        self.offset = offset
    }
}

public enum StoreError: Error, CustomStringConvertible {
    case notFound(String)
    case ambiguous(String, [String])
    case backend(String)

    public var description: String {
        switch self {
        case .notFound(let id): return "no session \"\(id)\""
        case let .ambiguous(id, matches): return "\"\(id)\" matches several sessions: \(matches.joined(separator: ", "))"
        case .backend(let s): return "session store: \(s)"
        }
    }
}

/// Where sessions and their activities are kept. SQLite on one node; a PostgreSQL backend for
/// several nodes implements the same protocol. No backend type leaks through it.
public protocol SessionStore: AccessStore {
    func insert(_ session: SessionRecord) throws
    func update(_ session: SessionRecord) throws
    func addActivity(sessionID: String, _ activity: Activity) throws
    func sessions(matching filter: SessionFilter) throws -> [SessionRecord]
    /// How many sessions the filter matches, ignoring its limit and offset.
    func count(matching filter: SessionFilter) throws -> Int
    /// By full id or a unique prefix (the short serial).
    func session(id: String) throws -> SessionRecord
    func activities(sessionID: String) throws -> [ActivityRecord]
    /// Sessions left `online` by a gateway that stopped; the caller marks them.
    func onlineSessions() throws -> [SessionRecord]
    /// Finished sessions started before `date` that still have a recording.
    func sessionsWithRecordings(startedBefore date: Date) throws -> [SessionRecord]
    func addCommand(_ command: CommandRecord) throws
    func commands(sessionID: String) throws -> [CommandRecord]
    /// Commands across sessions, newest first; `text` matches anywhere in the command.
    func searchCommands(_ filter: CommandFilter) throws -> [CommandMatch]
}
