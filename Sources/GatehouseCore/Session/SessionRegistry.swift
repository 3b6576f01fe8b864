import Foundation

/// What the registry knows of an online session.
public struct SessionSummary: Sendable {
    public var id: SessionID
    public var user: String
    public var asset: String?
    public var account: String?
    public var remoteAddress: String
    public var protocolName: String
    public var started: Date

    public init(id: SessionID, user: String, asset: String?, account: String?, remoteAddress: String, protocolName: String, started: Date) {
        self.id = id
        self.user = user
        self.asset = asset
        self.account = account
        self.remoteAddress = remoteAddress
        self.protocolName = protocolName
        self.started = started
    }
}

/// A live session as the registry sees it: something that can describe and close itself.
public protocol ManagedSession: AnyObject, Sendable {
    var summary: SessionSummary { get }
    /// What watchers and joiners attach to; nil for sessions without a terminal to show.
    var live: LiveChannel? { get }
    /// The recorder's queue: bytes waiting for the disk and how long it has been behind.
    var recorderQueue: (bytes: Int, lag: Double)? { get }
    /// What live watchers of a desktop (RDP) session attach to; nil for other sessions.
    var desktop: DesktopLive? { get }
    /// Closes both legs; `message` is shown to the user first. Safe to call from any thread.
    func terminate(message: String, by actor: String)
}

extension ManagedSession {
    public var live: LiveChannel? { nil }
    public var recorderQueue: (bytes: Int, lag: Double)? { nil }
    public var desktop: DesktopLive? { nil }
}

/// Every online session of this node, so that admins, the API and shutdown can find and
/// close any of them.
public final class SessionRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var sessions: [SessionID: ManagedSession] = [:]

    public init() {}

    public func add(_ session: ManagedSession) {
        lock.withLock { sessions[session.summary.id] = session }
    }

    public func remove(_ id: SessionID) {
        lock.withLock { _ = sessions.removeValue(forKey: id) }
    }

    /// An online session by full id or unique prefix (the short serial).
    public func session(_ id: String) -> ManagedSession? {
        let key = id.lowercased()
        guard !key.isEmpty else { return nil }
        return lock.withLock {
            if let uuid = UUID(uuidString: key), let s = sessions[SessionID(uuid)] { return s }
            let matches = sessions.values.filter { $0.summary.id.description.hasPrefix(key) }
            return matches.count == 1 ? matches[0] : nil
        }
    }

    public var online: [SessionSummary] { lock.withLock { sessions.values.map(\.summary) } }
    public var all: [ManagedSession] { lock.withLock { Array(sessions.values) } }
    public var count: Int { lock.withLock { sessions.count } }

    @discardableResult
    public func terminate(_ id: SessionID, message: String, by actor: String) -> Bool {
        guard let s = lock.withLock({ sessions[id] }) else { return false }
        s.terminate(message: message, by: actor)
        return true
    }

    public func terminateAll(message: String, by actor: String) {
        for s in lock.withLock({ Array(sessions.values) }) { s.terminate(message: message, by: actor) }
    }
}
