import CArgon2
import Foundation

/// Argon2id password hashes in the PHC string format (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`),
/// computed by the reference implementation (libargon2). Memory-hard, so a stolen config
/// does not give up passwords to a GPU farm.
public enum PasswordHasher {
    /// OWASP's recommended minimum for argon2id: 19 MiB, 2 passes, 1 lane.
    public static let memoryKiB: UInt32 = 19 * 1024
    public static let iterations: UInt32 = 2
    public static let parallelism: UInt32 = 1

    public static func isHash(_ text: String) -> Bool {
        text.hasPrefix("$argon2id$") && text.split(separator: "$").count == 5
    }

    public static func hash(password: String) -> String {
        var salt = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = rng.next() }
        let pwd = Array(password.utf8)
        let hashLength = 32
        let encodedLength = argon2_encodedlen(iterations, memoryKiB, parallelism, UInt32(salt.count), UInt32(hashLength), Argon2_id)
        var encoded = [CChar](repeating: 0, count: encodedLength)
        let rc = argon2id_hash_encoded(iterations, memoryKiB, parallelism, pwd, pwd.count, salt, salt.count,
                                       hashLength, &encoded, encodedLength)
        precondition(rc == ARGON2_OK.rawValue, "argon2id failed: \(String(cString: argon2_error_message(rc)))")
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Only argon2id hashes verify; anything else is a mismatch.
    public static func verify(password: String, hash: String) -> Bool {
        guard isHash(hash) else { return false }
        let pwd = Array(password.utf8)
        return argon2id_verify(hash, pwd, pwd.count) == ARGON2_OK.rawValue
    }
}
