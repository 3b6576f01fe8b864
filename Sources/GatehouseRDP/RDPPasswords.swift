import CGatehouseRDP
import Foundation
import GatehouseCore

/// One-time RDP passwords: what users type into mstsc (or any client that insists on NLA).
///
/// NLA checks an NTLM response, which needs the password's NT hash; the gateway keeps only
/// argon2id hashes of users' real passwords, so NLA works against these instead. A user (or
/// an admin for them) asks for one; it is good for one session within a few minutes, and
/// only its NT hash is stored, deleted when used.
public enum RDPPasswords {
    public struct Issued: Sendable {
        public var password: String
        public var expires: Date
    }

    /// Issues a new one-time password for `user`, replacing any earlier one.
    public static func issue(user: String, store: SessionStore, lifetime: TimeInterval = 600, now: Date = Date()) throws -> Issued {
        // 20 characters from an alphabet without look-alikes: ~115 bits, typeable.
        let alphabet = Array("abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var rng = SystemRandomNumberGenerator()
        let password = String((0..<20).map { _ in alphabet[Int(rng.next(upperBound: UInt32(alphabet.count)))] })
        guard let hash = ntHash(password) else { throw RDPPasswordError.hashUnavailable }
        let expires = now.addingTimeInterval(lifetime)
        try store.setRDPPassword(user: user, ntHash: hash, created: now, expires: expires)
        return Issued(password: password, expires: expires)
    }

    /// The NT hash (MD4 of the UTF-16 password), as NTLM uses it.
    public static func ntHash(_ password: String) -> Data? {
        var hash = [UInt8](repeating: 0, count: 16)
        guard gh_rdp_nt_hash(password, &hash) == 1 else { return nil }
        return Data(hash)
    }

    /// True when `password` is the user's current one-time password; it is then used up.
    public static func consume(user: String, password: String, store: SessionStore, now: Date = Date()) -> Bool {
        guard let stored = try? store.rdpPassword(user: user, now: now), let hash = ntHash(password),
              constantTimeEqual(stored, hash) else { return false }
        try? store.removeRDPPassword(user: user)
        return true
    }

    static func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

public enum RDPPasswordError: Error, CustomStringConvertible {
    case hashUnavailable
    public var description: String { "cannot compute an NT hash (WinPR's MD4 is unavailable)" }
}
