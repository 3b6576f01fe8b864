import Crypto
import Foundation
import GRDB

/// A secret handed to a person (API token, web login, invite code). Only its SHA-256 is kept;
/// the secret is shown once and cannot be read back from the store.
public enum Secret {
    /// 32 random bytes, URL-safe base64 without padding, after `prefix`.
    public static func generate(prefix: String) -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return prefix + text
    }

    /// A short invite code people can type: 12 letters and digits without look-alikes.
    public static func inviteCode() -> String {
        let alphabet = Array("abcdefghjkmnpqrstuvwxyz23456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<12).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] })
    }

    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

public struct CredentialRecord: Sendable, Equatable {
    public enum Kind: String, Sendable { case token, web }
    public var kind: Kind
    public var user: String
    public var created: Date
    public var expires: Date?
    public var label: String?

    public init(kind: Kind, user: String, created: Date, expires: Date?, label: String?) {
        self.kind = kind
        self.user = user
        self.created = created
        self.expires = expires
        self.label = label
    }
}

public struct ShareRecord: Sendable, Equatable, Codable {
    public enum Mode: String, Sendable, Codable { case read, write }
    public var sessionID: String
    public var mode: Mode
    public var createdBy: String
    public var created: Date
    public var expires: Date
    /// Who may use it; empty means any Gatehouse user.
    public var users: [String]

    public init(sessionID: String, mode: Mode, createdBy: String, created: Date, expires: Date, users: [String]) {
        self.sessionID = sessionID
        self.mode = mode
        self.createdBy = createdBy
        self.created = created
        self.expires = expires
        self.users = users
    }
}

public struct CollaborationRecord: Sendable, Equatable, Codable {
    public var id: Int64?
    public var sessionID: String
    public var user: String
    public var mode: String
    public var remoteAddress: String
    public var joined: Date
    public var left: Date?

    public init(id: Int64? = nil, sessionID: String, user: String, mode: String, remoteAddress: String, joined: Date, left: Date? = nil) {
        self.id = id
        self.sessionID = sessionID
        self.user = user
        self.mode = mode
        self.remoteAddress = remoteAddress
        self.joined = joined
        self.left = left
    }
}

public struct TransferRecord: Sendable, Equatable, Codable {
    public var sessionID: String
    public var time: Date
    public var direction: String
    public var path: String
    public var bytes: Int
    /// "ok", "refused", "incomplete", or the SFTP status / scp error.
    public var outcome: String
    public var ended: Date?
    /// Of the content, when it went through whole and in order.
    public var sha256: String?

    public init(sessionID: String, time: Date, direction: String, path: String, bytes: Int, outcome: String,
                ended: Date? = nil, sha256: String? = nil) {
        self.ended = ended
        self.sha256 = sha256
        self.sessionID = sessionID
        self.time = time
        self.direction = direction
        self.path = path
        self.bytes = bytes
        self.outcome = outcome
    }
}

/// Credentials, invitations and collaboration records.
public protocol AccessStore: Sendable {
    func addCredential(secret: String, _ record: CredentialRecord) throws
    /// The credential for a secret, if it exists and has not expired.
    func credential(secret: String, now: Date) throws -> CredentialRecord?
    func removeCredential(secret: String) throws
    func addShare(code: String, _ share: ShareRecord) throws
    func share(code: String) throws -> ShareRecord?
    func addCollaboration(_ record: CollaborationRecord) throws -> Int64
    func endCollaboration(id: Int64, at: Date) throws
    func collaborations(sessionID: String) throws -> [CollaborationRecord]
    func transfers(sessionID: String) throws -> [TransferRecord]
    func addTransfer(_ transfer: TransferRecord) throws
    /// The user's one-time RDP password (its NT hash), replacing any earlier one.
    func setRDPPassword(user: String, ntHash: Data, created: Date, expires: Date) throws
    /// The NT hash of the user's one-time RDP password, unless expired.
    func rdpPassword(user: String, now: Date) throws -> Data?
    func removeRDPPassword(user: String) throws
}

extension SQLiteSessionStore: AccessStore {
    public func addCredential(secret: String, _ r: CredentialRecord) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO credential (hash, kind, user, created_at, expires_at, label) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [Secret.hash(secret), r.kind.rawValue, r.user, r.created.timeIntervalSince1970,
                                           r.expires?.timeIntervalSince1970, r.label])
            }
        }
    }

    public func credential(secret: String, now: Date) throws -> CredentialRecord? {
        try wrap {
            try pool.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM credential WHERE hash = ? AND (expires_at IS NULL OR expires_at > ?)",
                                                 arguments: [Secret.hash(secret), now.timeIntervalSince1970]) else { return nil }
                return CredentialRecord(kind: CredentialRecord.Kind(rawValue: row["kind"]) ?? .token, user: row["user"],
                                        created: Date(timeIntervalSince1970: row["created_at"]),
                                        expires: (row["expires_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                                        label: row["label"])
            }
        }
    }

    public func removeCredential(secret: String) throws {
        try wrap { try pool.write { db in try db.execute(sql: "DELETE FROM credential WHERE hash = ?", arguments: [Secret.hash(secret)]) } }
    }

    public func addShare(code: String, _ s: ShareRecord) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO share (hash, session_id, mode, created_by, created_at, expires_at, users) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               arguments: [Secret.hash(code), s.sessionID, s.mode.rawValue, s.createdBy, s.created.timeIntervalSince1970,
                                           s.expires.timeIntervalSince1970, s.users.joined(separator: ",")])
            }
        }
    }

    public func share(code: String) throws -> ShareRecord? {
        try wrap {
            try pool.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM share WHERE hash = ?", arguments: [Secret.hash(code)]) else { return nil }
                let users: String = row["users"]
                return ShareRecord(sessionID: row["session_id"], mode: ShareRecord.Mode(rawValue: row["mode"]) ?? .read,
                                   createdBy: row["created_by"], created: Date(timeIntervalSince1970: row["created_at"]),
                                   expires: Date(timeIntervalSince1970: row["expires_at"]),
                                   users: users.split(separator: ",").map(String.init))
            }
        }
    }

    public func addCollaboration(_ c: CollaborationRecord) throws -> Int64 {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO collaboration (session_id, user, mode, remote_address, joined_at, left_at) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [c.sessionID, c.user, c.mode, c.remoteAddress, c.joined.timeIntervalSince1970, c.left?.timeIntervalSince1970])
                return db.lastInsertedRowID
            }
        }
    }

    public func endCollaboration(id: Int64, at time: Date) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "UPDATE collaboration SET left_at = ? WHERE id = ? AND left_at IS NULL", arguments: [time.timeIntervalSince1970, id])
            }
        }
    }

    public func collaborations(sessionID: String) throws -> [CollaborationRecord] {
        try wrap {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM collaboration WHERE session_id = ? ORDER BY joined_at, id", arguments: [sessionID]).map {
                    CollaborationRecord(id: $0["id"], sessionID: $0["session_id"], user: $0["user"], mode: $0["mode"],
                                        remoteAddress: $0["remote_address"], joined: Date(timeIntervalSince1970: $0["joined_at"]),
                                        left: ($0["left_at"] as Double?).map(Date.init(timeIntervalSince1970:)))
                }
            }
        }
    }

    public func addTransfer(_ t: TransferRecord) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO transfer (session_id, time, direction, path, bytes, outcome, ended_at, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               arguments: [t.sessionID, t.time.timeIntervalSince1970, t.direction, t.path, t.bytes, t.outcome,
                                           t.ended?.timeIntervalSince1970, t.sha256])
            }
        }
    }

    public func transfers(sessionID: String) throws -> [TransferRecord] {
        try wrap {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM transfer WHERE session_id = ? ORDER BY time, id", arguments: [sessionID]).map {
                    TransferRecord(sessionID: $0["session_id"], time: Date(timeIntervalSince1970: $0["time"]), direction: $0["direction"],
                                   path: $0["path"], bytes: $0["bytes"], outcome: $0["outcome"],
                                   ended: ($0["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:)), sha256: $0["sha256"])
                }
            }
        }
    }

    public func setRDPPassword(user: String, ntHash: Data, created: Date, expires: Date) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO rdp_password (user, nt_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
                               arguments: [user, ntHash, created.timeIntervalSince1970, expires.timeIntervalSince1970])
            }
        }
    }

    public func rdpPassword(user: String, now: Date) throws -> Data? {
        try wrap {
            try pool.read { db in
                try Data.fetchOne(db, sql: "SELECT nt_hash FROM rdp_password WHERE user = ? AND expires_at > ?",
                                  arguments: [user, now.timeIntervalSince1970])
            }
        }
    }

    public func removeRDPPassword(user: String) throws {
        try wrap { try pool.write { db in try db.execute(sql: "DELETE FROM rdp_password WHERE user = ?", arguments: [user]) } }
    }
}
