import Foundation

/// How risky a command was judged, by the rules in force when it ran.
public enum CommandRisk: String, Sendable, Codable, CaseIterable {
    /// No rule matched, or an `allow` rule did.
    case normal
    /// A `warn` rule matched: it ran, and auditors should look.
    case high
    /// A `deny` rule matched: it never reached the asset.
    case denied
}

/// One command a user ran (or tried to), as the audit trail keeps it.
public struct CommandRecord: Sendable, Equatable, Codable {
    public var sessionID: String
    public var time: Date
    /// Seconds into the session's recording, where its `"m"` marker is.
    public var offset: Double
    public var command: String
    /// The first lines of what it printed (capped).
    public var output: String
    public var risk: CommandRisk
    /// The rule that matched, as `#N pattern`, if any.
    public var rule: String?

    public init(sessionID: String, time: Date, offset: Double, command: String, output: String, risk: CommandRisk, rule: String?) {
        self.sessionID = sessionID
        self.time = time
        self.offset = offset
        self.command = command
        self.output = output
        self.risk = risk
        self.rule = rule
    }
}

/// A command found by a search, with the session it belongs to.
public struct CommandMatch: Sendable, Equatable {
    public var command: CommandRecord
    public var user: String
    public var asset: String
    public var account: String
}

public struct CommandFilter: Sendable {
    public var text: String?
    public var user: String?
    public var asset: String?
    public var risk: CommandRisk?
    public var since: Date?
    public var until: Date?
    public var limit: Int = 500
    public var offset: Int = 0

    public init(text: String? = nil, user: String? = nil, asset: String? = nil, risk: CommandRisk? = nil, since: Date? = nil, limit: Int = 500) {
        self.text = text
        self.user = user
        self.asset = asset
        self.risk = risk
        self.since = since
        self.limit = limit
    }
}
