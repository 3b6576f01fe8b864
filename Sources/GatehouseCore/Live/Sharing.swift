import Foundation

/// Who may see, watch, share and end which sessions; and invitations to join one.
/// The SSH gateway and the HTTP API ask the same questions here.
public struct SessionAccess: Sendable {
    public let directory: Directory
    public let registry: SessionRegistry
    public let audit: AuditTrail

    public init(directory: Directory, registry: SessionRegistry, audit: AuditTrail) {
        self.directory = directory
        self.registry = registry
        self.audit = audit
    }

    public func role(of user: String) -> GatehouseConfig.Role? { directory.user(named: user)?.role }

    /// Users see their own sessions; auditors and admins see all.
    public func maySee(_ user: String, sessionOwner: String) -> Bool {
        guard let role = role(of: user) else { return false }
        return role != .user || user == sessionOwner
    }

    public func mayWatch(_ user: String) -> Bool { [.auditor, .admin].contains(role(of: user)) }
    public func mayTerminate(_ user: String) -> Bool { role(of: user) == .admin }
    public func mayShare(_ user: String, sessionOwner: String) -> Bool { user == sessionOwner || role(of: user) == .admin }

    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case noSuchSession
        case notAllowed(String)
        case badInvite
        case inviteExpired
        case notInvited
        case sessionEnded

        public var description: String {
            switch self {
            case .noSuchSession: return "no such online session"
            case .notAllowed(let what): return "you may not \(what)"
            case .badInvite: return "unknown invite code"
            case .inviteExpired: return "this invite code has expired"
            case .notInvited: return "this invite code is for other users"
            case .sessionEnded: return "the shared session has ended"
            }
        }
    }

    /// Creates an invitation to an online session; returns the code (shown once).
    public func share(sessionID: String, mode: ShareRecord.Mode, validFor: TimeInterval, users: [String], by user: String,
                      now: Date = Date()) throws -> (code: String, share: ShareRecord) {
        guard let session = registry.session(sessionID), session.live != nil else { throw Refusal.noSuchSession }
        guard mayShare(user, sessionOwner: session.summary.user) else { throw Refusal.notAllowed("share this session") }
        let code = Secret.inviteCode()
        let share = ShareRecord(sessionID: session.summary.id.description, mode: mode, createdBy: user, created: now,
                                expires: now.addingTimeInterval(validFor), users: users)
        try audit.store.addShare(code: code, share)
        audit.activity(sessionID: share.sessionID, Activity(.shared, "\(user) created a \(mode.rawValue) invite, valid until \(Self.time(share.expires))"))
        return (code, share)
    }

    /// The session an invite code lets `user` join, and how.
    public func resolveInvite(_ code: String, user: String, now: Date = Date()) -> Result<(ShareRecord, ManagedSession), Refusal> {
        let cleaned = code.lowercased()
        guard cleaned.count <= 64, let share = try? audit.store.share(code: cleaned) else { return .failure(.badInvite) }
        guard share.expires > now else { return .failure(.inviteExpired) }
        guard share.users.isEmpty || share.users.contains(user) else { return .failure(.notInvited) }
        guard let session = registry.session(share.sessionID), session.live != nil else { return .failure(.sessionEnded) }
        return .success((share, session))
    }

    public static func time(_ date: Date) -> String {
        ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime])
    }
}

extension AuditTrail {
    /// An activity on any session, from outside its queue (shares, joins, API actions).
    public func activity(sessionID: String, _ activity: Activity) {
        write("activity") { try $0.addActivity(sessionID: sessionID, activity) }
    }

    /// Records that someone joined a session; the returned id ends the record.
    public func collaborationStarted(_ record: CollaborationRecord) -> Int64? {
        storeQueue.sync {
            do { return try store.addCollaboration(record) } catch {
                logger.error("audit store write failed (collaboration): \(error)")
                return nil
            }
        }
    }

    public func collaborationEnded(id: Int64, at time: Date = Date()) {
        write("collaboration end") { try $0.endCollaboration(id: id, at: time) }
    }
}
